"""What can go wrong, each with the exit status a script sees (docs/client.md)."""

from __future__ import annotations

OK = 0
API_REFUSED = 1  # the API answered 4xx: a bad parameter, no grant, nothing there
USAGE = 2  # bad options or configuration, before anything was asked
SERVER_ERROR = 3  # the collector or a node failed: 5xx
UNREACHABLE = 4  # the collector could not be reached (connection, TLS, timeout)
CUT_SHORT = 5  # the answer broke off in the middle: what was written is incomplete
OUTPUT_FAILED = 6  # the output file could not be written (disk full, no such directory)
INTERRUPTED = 130  # Ctrl-C
BROKEN_PIPE = 141  # whoever read our stdout went away (128 + SIGPIPE, as the shell reports it)


class ParError(Exception):
    """An error to print (``par: <message>``) and exit with ``status``."""

    status = USAGE

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class UsageError(ParError):
    status = USAGE


class ApiError(ParError):
    """The API's own ``{"error": ...}`` answer, with its HTTP status."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message, API_REFUSED if http_status < 500 else SERVER_ERROR)
        self.http_status = http_status


class Unreachable(ParError):
    status = UNREACHABLE


class CutShort(ParError):
    status = CUT_SHORT


class OutputError(ParError):
    status = OUTPUT_FAILED
