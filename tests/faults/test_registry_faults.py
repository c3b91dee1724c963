"""A registry cache that answers with garbage, 500s, slowly, or drops the connection: each
is a cache miss and a warning, never a failed dependency or a blocked job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.scenario import Dep, make_build
from tests.faults.servers import bad_registry
from tests.support.sourceserver import ServerURL

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["garbage", "500", "slow", "drop"])
def test_registry_fault_is_a_miss(
    mode: str,
    engine: FaultEngine,
    tmp_path: Path,
    sources: tuple[Path, ServerURL],
    record: Record,
) -> None:
    srv, base = sources
    with bad_registry(mode) as registry:
        build = make_build(tmp_path, engine, base, srv, [Dep("regdep")])
        build.env["ORCH_CACHE_REGISTRY"] = f"127.0.0.1:{registry.server_address[1]}"
        outcome = build.run("--no-verify", "--no-audit")
        asked = registry.requests
    record(f"registry: {mode}", outcome)
    assert asked > 0, "orch never asked the registry: the fault was not injected"
    assert_clean(outcome)
    assert outcome.report is not None
    deps = {d["name"]: d["status"] for d in outcome.report["deps"]}
    assert deps == {"regdep": "built"}, deps
    assert outcome.exit_code == 0, outcome.summary() + outcome.output[-3000:]
