"""Error types and the process exit codes they map to (documented in the README)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 and SIGHUP 129


class OrchError(Exception):
    """Base class: an error orch reports as one message, without a traceback."""

    exit_code = EXIT_BUILD_FAILED


class ConfigError(OrchError):
    """The recipe or the command line asks for something invalid. Nothing was started."""

    exit_code = EXIT_CONFIG


class EnvironmentProblem(OrchError):
    """The host cannot do what was asked (no engine, no image, no binfmt handler...)."""

    exit_code = EXIT_ENVIRONMENT


class EngineUnreachable(EnvironmentProblem):
    """A container engine (the local one, or one a job is routed to) cannot be reached."""


class Interrupted(KeyboardInterrupt):
    """A signal asked orch to stop (SIGINT, SIGTERM, SIGHUP): handled like Ctrl-C, and
    the exit code says which (128 + the signal's number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
