"""The dependency DAG: order and levels (what can build in parallel)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class CycleError(ValueError):
    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = tuple(cycle)


def topological_order(requires: Mapping[str, Sequence[str]]) -> list[str]:
    """Dependencies before dependents; stable (input order among independent nodes)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, stack: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise CycleError([*stack[stack.index(node) :], node])
        state[node] = 1
        for req in requires.get(node, ()):
            visit(req, [*stack, node])
        state[node] = 2
        order.append(node)

    for node in requires:
        visit(node, [])
    return order


def closure(names: Sequence[str], requires: Mapping[str, Sequence[str]]) -> set[str]:
    """The names plus everything they transitively require."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(requires.get(n, ()))
    return out
