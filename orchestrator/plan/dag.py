"""The dependency DAG per group, as `orch plan --deps` shows it and `--json` carries it.

Every image/architecture group builds the recipe's dependencies once; each node is a
dependency with its requirements and, when the caller could tell, whether its artifact
is cached. Pure: the caller (cli) supplies cache answers, so the plan needs no engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.plan.jobs import Plan

# (group, dependency) -> "hit" | "miss" | None (not known: image absent, engine away...)
CacheAnswer = Callable[[str, str], str | None]


@dataclass(frozen=True)
class DagNode:
    name: str
    requires: tuple[str, ...]
    depth: int  # the longest requirement chain below it: what can run at once shares one
    network: bool
    cache: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requires": list(self.requires),
            "depth": self.depth,
            "network": self.network,
            "cache": self.cache,
        }


@dataclass(frozen=True)
class GroupDag:
    group: str
    arch: str
    image: str
    jobs: tuple[str, ...]
    nodes: tuple[DagNode, ...]  # build order

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "arch": self.arch,
            "image": self.image,
            "jobs": list(self.jobs),
            "dependencies": [n.to_json() for n in self.nodes],
        }


def dag(plan: Plan, cache: CacheAnswer | None = None) -> tuple[GroupDag, ...]:
    requires = dict(plan.dep_requires)
    depth = _depths(plan.dep_order, requires)
    out = []
    for group, jobs in plan.groups():
        nodes = tuple(
            DagNode(
                name,
                requires.get(name, ()),
                depth[name],
                name in plan.dep_network,
                cache(group, name) if cache else None,
            )
            for name in plan.dep_order
        )
        out.append(GroupDag(group, jobs[0].arch, jobs[0].image, tuple(j.id for j in jobs), nodes))
    return tuple(out)


def _depths(order: Sequence[str], requires: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for name in order:  # requirements come first in build order
        depth[name] = 1 + max((depth[r] for r in requires.get(name, ())), default=-1)
    return depth


def render_tree(groups: Sequence[GroupDag]) -> list[str]:
    """Per group, each dependency under what needs it (top-level: nothing needs it); a
    dependency needed twice is shown in full once, then as a reference."""
    lines: list[str] = []
    for g in groups:
        lines.append(f"{g.group}  ({len(g.jobs)} job(s): {', '.join(g.jobs)})")
        nodes = {n.name: n for n in g.nodes}
        needed = {r for n in g.nodes for r in n.requires}
        roots = [n.name for n in g.nodes if n.name not in needed]
        shown: set[str] = set()
        for i, name in enumerate(roots):
            _branch(nodes, name, "", i == len(roots) - 1, shown, lines)
        if not g.nodes:
            lines.append("  (no dependencies)")
    return lines


def _branch(
    nodes: Mapping[str, DagNode],
    name: str,
    indent: str,
    last: bool,
    shown: set[str],
    lines: list[str],
) -> None:
    node = nodes[name]
    facts = [f"requires {', '.join(node.requires)}" if node.requires else "no requirements"]
    if node.network:
        facts.append("network")
    if node.cache:
        facts.append(f"cache {node.cache}")
    again = name in shown
    mark = " (see above)" if again and node.requires else ""
    lines.append(f"  {indent}{'└─ ' if last else '├─ '}{name}{mark}  [{'; '.join(facts)}]")
    if again:
        return
    shown.add(name)
    child = indent + ("   " if last else "│  ")
    for i, req in enumerate(node.requires):
        _branch(nodes, req, child, i == len(node.requires) - 1, shown, lines)
