"""An interruption reaches image steps blocked in worker threads: debootstrap's process is
terminated and its thread fails out at once, instead of running to completion."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.errors import OrchError
from orchestrator.images import rootfs
from orchestrator.util import stoppers


def test_stop_all_ends_a_blocked_child_process_promptly() -> None:
    lines: list[str] = []
    errors: list[BaseException] = []

    def step() -> None:
        try:  # a long child that keeps writing, as debootstrap does
            rootfs._run(["sh", "-c", "echo start; sleep 60; echo never"], lines.append)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=step)
    t0 = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 10
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines == ["start"]
    assert stoppers.stop_all() == 1
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - t0 < 15
    assert len(errors) == 1 and isinstance(errors[0], OrchError)
    assert "never" not in lines
    assert stoppers.stop_all() == 0  # unregistered once the step ended


def test_a_failing_stopper_does_not_hide_the_others() -> None:
    called: list[str] = []

    def broken() -> None:
        raise RuntimeError("engine gone")

    with stoppers.stoppable(broken), stoppers.stoppable(lambda: called.append("second")):
        assert stoppers.stop_all() == 2
    assert called == ["second"]


@pytest.mark.parametrize("repeat", [1, 2])
def test_stoppable_unregisters_on_error(repeat: int) -> None:
    for _ in range(repeat):
        with pytest.raises(ValueError), stoppers.stoppable(lambda: None):
            raise ValueError
    assert stoppers.stop_all() == 0
