"""Errors of the live path: a server that is down, refuses a request or fails to start."""

from __future__ import annotations

from loratwin.errors import LoraTwinError


class ServerError(LoraTwinError):
    """A vLLM server did not do what was asked (one line naming its URL and what failed).

    Raised for a server that cannot be reached, answers ``/health`` or ``/metrics`` with an
    error, does not serve an adapter name, or fails a benchmark request. The CLI prints it as
    ``error: <url>: <what failed>`` with exit code 2, after writing what was measured.
    """

    def __init__(self, url: str, what: str) -> None:
        self.url = url
        super().__init__(f"{url}: {what}")


class StartupError(ServerError):
    """A launched server exited (or never became healthy) before serving.

    ``reason`` is a short code when the log shows a known start-up failure
    (:data:`loratwin.live.launcher.STARTUP_FAILURES`), else ``"exited"`` or ``"timeout"``.
    """

    def __init__(self, url: str, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(url, f"server did not start ({reason}): {detail}")
