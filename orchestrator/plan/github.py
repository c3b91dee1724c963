"""CI matrices: a plan cut into shards (whole image/arch groups, one runner each), as GitHub
Actions' `strategy.matrix` JSON. Each entry runs on its `runs-on` with `orch build --shard K/N`
(and the same `--runner` overrides, so both cut the plan alike)."""

from __future__ import annotations

from typing import Any

from orchestrator.plan.jobs import Plan
from orchestrator.plan.runners import Runners


def github_matrix(plan: Plan, max_shards: int, runners: Runners | None = None) -> dict[str, Any]:
    runners = runners or Runners()
    # At least one shard per runner: a shard runs on one machine.
    wanted = max(max_shards, len({runners.label(j.arch) for j in plan.jobs}))
    shards = plan.shards(wanted, runners)
    n = len(shards)
    include = []
    for k, jobs in enumerate(shards, start=1):
        arch_list = sorted({j.arch for j in jobs})
        label = runners.label(jobs[0].arch)
        include.append(
            {
                "shard": f"{k}/{n}",
                "name": f"shard {k}/{n}: {', '.join(arch_list)} on {label} ({len(jobs)} jobs)",
                "runs-on": label,
                "archs": " ".join(arch_list),
                "jobs": " ".join(j.id for j in jobs),
                "emulated": any(runners.emulated(j.arch) for j in jobs),
            }
        )
    return {"include": include}
