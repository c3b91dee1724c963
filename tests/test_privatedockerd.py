"""The private dockerds' descriptions (scripts/privatedockerd.py), without starting one:
the fault suite's and the second engine's never share a socket, file or network."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

from scripts.privatedockerd import PrivateDockerd
from tests.faults.engine import DOCKERD as FAULTS
from tests.support.secondengine import DOCKERD as SECOND


def test_named_derives_its_files_from_the_stem() -> None:
    d = PrivateDockerd.named("orch-x", "orchx0", "172.29.55.0/24", log=Path("/tmp/x.log"))
    assert (d.socket, d.pidfile, d.lock) == tuple(
        Path(f"/run/orch-x.{ext}") for ext in ("sock", "pid", "lock")
    )
    assert (d.exec_root, d.data_root, d.log) == (
        Path("/run/orch-x-exec"),
        Path("/var/lib/orch-x"),
        Path("/tmp/x.log"),
    )
    assert d.host == "unix:///run/orch-x.sock" and d.gateway == "172.29.55.1/24"


def test_nat_rules_name_its_own_bridge_and_subnet() -> None:
    rules = [" ".join(rule) for _table, _chain, rule in FAULTS._rules()]
    assert all("orchflt0" in r for r in rules) and "-s 172.29.77.0/24" in rules[-1]


def test_the_two_test_engines_share_nothing() -> None:
    shared = set(astuple(FAULTS)[:-1]) & set(astuple(SECOND)[:-1])  # all but the timeout
    assert shared == set()
