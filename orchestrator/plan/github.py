"""CI matrices: a plan cut into shards (whole image/arch groups), as GitHub Actions'
`strategy.matrix` JSON. Each entry runs with `orch build --shard K/N`."""

from __future__ import annotations

from typing import Any

from orchestrator.plan.jobs import Plan


def github_matrix(plan: Plan, max_shards: int) -> dict[str, Any]:
    shards = plan.shards(max_shards)
    n = len(shards)
    include = []
    for k, jobs in enumerate(shards, start=1):
        arch_list = sorted({j.arch for j in jobs})
        include.append(
            {
                "shard": f"{k}/{n}",
                "name": f"shard {k}/{n}: {', '.join(arch_list)} ({len(jobs)} jobs)",
                "archs": " ".join(arch_list),
                "jobs": " ".join(j.id for j in jobs),
                "emulated": any(j.emulated for j in jobs),
            }
        )
    return {"include": include}
