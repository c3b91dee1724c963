"""The plan: the matrix of jobs a recipe asks for, each with its image, plus what was
excluded and why. Pure data (frozen dataclasses), computed without the engine, so it can
be printed, sharded across CI runners and compared between runs.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator import archs
from orchestrator.errors import ConfigError
from orchestrator.plan import catalog
from orchestrator.plan.runners import Runners
from orchestrator.recipe.graph import topological_order
from orchestrator.recipe.model import Recipe


@dataclass(frozen=True)
class Job:
    id: str  # cp311-manylinux_2_31_x86_64
    python: str  # "3.11"
    python_tag: str  # cp311-cp311: the /opt/python/<tag> directory
    policy: str  # PEP 600 name: manylinux_2_31
    platform_tag: str  # manylinux_2_31_x86_64: the tag the wheel is repaired to
    arch: str
    image: str
    image_source: str  # local | pypa | explicit
    runtime_image: str | None
    emulated: bool
    deps: tuple[str, ...] = ()  # dependency names, build order

    @property
    def group(self) -> str:
        """Jobs of one group share an image and architecture, hence their dependency builds."""
        return f"{self.image}|{self.arch}"


@dataclass(frozen=True)
class Excluded:
    id: str
    reason: str


@dataclass(frozen=True)
class Plan:
    recipe: str
    jobs: tuple[Job, ...]
    excluded: tuple[Excluded, ...] = ()
    dep_order: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "jobs": [asdict(j) | {"group": j.group} for j in self.jobs],
            "excluded": [asdict(e) for e in self.excluded],
            "dependency_order": list(self.dep_order),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def groups(self) -> list[tuple[str, tuple[Job, ...]]]:
        out: dict[str, list[Job]] = {}
        for job in self.jobs:
            out.setdefault(job.group, []).append(job)
        return [(g, tuple(js)) for g, js in out.items()]

    def select(self, only: Sequence[str] = ()) -> Plan:
        """Keep jobs whose id matches one of `only` (exact ids or globs)."""
        if not only:
            return self
        keep = tuple(j for j in self.jobs if any(fnmatch.fnmatchcase(j.id, o) for o in only))
        if not keep:
            ids = ", ".join(j.id for j in self.jobs) or "none"
            raise ConfigError(f"--only {' '.join(only)} matches no job; jobs: {ids}")
        return Plan(self.recipe, keep, self.excluded, self.dep_order)

    def shards(self, count: int, runners: Runners | None = None) -> list[tuple[Job, ...]]:
        """Split into at most `count` shards (at least one per runner), whole groups only (a
        runner builds a group's dependencies once), never mixing runners, balancing the
        estimated cost greedily: longest first."""
        runners = runners or Runners()
        by_runner: dict[str, list[tuple[Job, ...]]] = {}
        for _name, jobs in self.groups():
            by_runner.setdefault(runners.label(jobs[0].arch), []).append(jobs)
        if count < len(by_runner):  # fewer shards than runners: plain balance (`--shard 1/1`)
            every = [g for gs in by_runner.values() for g in gs]
            return _balance(sorted(every, key=lambda g: -_cost(g, runners)), count, runners)
        bins = dict.fromkeys(by_runner, 1)
        cost = {lab: sum(_cost(g, runners) for g in gs) for lab, gs in by_runner.items()}
        for _ in range(max(0, count - len(bins))):  # each spare shard to the busiest runner
            open_ = [lab for lab in bins if bins[lab] < len(by_runner[lab])]
            if not open_:
                break
            busiest = max(open_, key=lambda lab: (cost[lab] / bins[lab], lab))
            bins[busiest] += 1
        out: list[tuple[Job, ...]] = []
        for label in sorted(by_runner, key=lambda lab: (-cost[lab], lab)):
            groups = sorted(by_runner[label], key=lambda g: -_cost(g, runners))
            out.extend(_balance(groups, bins[label], runners))
        return out

    def shard(self, index: int, count: int, runners: Runners | None = None) -> Plan:
        """Shard `index` (1-based) of `count`: the same split `orch matrix` prints."""
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(f"--shard {index}/{count}: expected K/N with 1 <= K <= N")
        shards = self.shards(count, runners)
        jobs = shards[index - 1] if index <= len(shards) else ()
        return Plan(self.recipe, jobs, self.excluded, self.dep_order)


def _balance(
    groups: Sequence[tuple[Job, ...]], count: int, runners: Runners
) -> list[tuple[Job, ...]]:
    """Groups (longest first) into at most `count` bins, each to the cheapest bin so far."""
    bins: list[list[Job]] = [[] for _ in range(max(1, min(count, len(groups))))]
    for jobs in groups:
        target = min(bins, key=lambda b: _cost(b, runners))
        target.extend(jobs)
    return [tuple(b) for b in bins if b]


def _job_cost(job: Job, runners: Runners) -> float:
    # Emulated jobs take ~20x longer here; measured ratios are what matter for balance.
    return 20.0 if runners.emulated(job.arch) else 1.0


def _cost(jobs: Iterable[Job], runners: Runners) -> float:
    return sum(_job_cost(j, runners) for j in jobs)


def python_tag(version: str) -> str:
    major, minor = version.split(".")
    tag = f"cp{major}{minor}"
    return f"{tag}-{tag}m" if (int(major), int(minor)) < (3, 8) else f"{tag}-{tag}"


def make_plan(recipe: Recipe, host_arch: str | None = None) -> Plan:
    cat = catalog.load()
    host = host_arch or archs.host_arch()
    dep_order = tuple(topological_order({d.name: d.requires for d in recipe.dependencies}))
    jobs: list[Job] = []
    excluded: list[Excluded] = []
    for policy in recipe.platforms:
        pep600 = cat.canonical(policy)
        for arch in recipe.archs:
            tag = f"{pep600}_{arch}"
            try:
                image = cat.choose(pep600, arch, recipe.images.get(policy))
            except KeyError:
                for py in recipe.python:
                    excluded.append(
                        Excluded(
                            f"{python_tag(py).split('-')[0]}-{tag}", f"{policy} has no {arch} image"
                        )
                    )
                continue
            for py in recipe.python:
                job_id = f"{python_tag(py).split('-')[0]}-{tag}"
                if py not in image.pythons:
                    excluded.append(
                        Excluded(
                            job_id,
                            f"{image.ref} has no CPython {py} (has {', '.join(image.pythons)})",
                        )
                    )
                    continue
                if not _selected(job_id, recipe.build_selectors, recipe.skip_selectors):
                    excluded.append(Excluded(job_id, "deselected by build/skip"))
                    continue
                jobs.append(
                    Job(
                        id=job_id,
                        python=py,
                        python_tag=python_tag(py),
                        policy=pep600,
                        platform_tag=recipe.repair.plat or tag,
                        arch=arch,
                        image=image.ref,
                        image_source=image.source,
                        runtime_image=image.runtime_ref,
                        emulated=not archs.runs_natively(arch, host),
                        deps=dep_order,
                    )
                )
    return Plan(str(recipe.path), tuple(jobs), tuple(excluded), dep_order)


def _selected(job_id: str, build: Sequence[str], skip: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(job_id, b) for b in build) and not any(
        fnmatch.fnmatchcase(job_id, s) for s in skip
    )
