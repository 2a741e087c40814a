"""A Ray session for the commands that can send twin runs to a Ray cluster.

``loratwin dataset`` (surrogate data sets) and the twin confirmations / ``--verify`` runs of
``loratwin place`` share it: connect to ``address`` (``auto``, ``ray://host:10001``) or, with
``local``, start a Ray instance on this machine with ``jobs`` CPUs; a session this function
started is shut down on exit, and task references still pending then are cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loratwin.errors import ConfigError


@contextmanager
def ray_session(address: str, jobs: int) -> Iterator[tuple[Any, list[Any]]]:
    """``(ray, pending)``: the ``ray`` module, connected, and a list the caller keeps its
    outstanding object references in (cancelled with ``force=True`` on exit).

    Raises
    ------
    ConfigError
        Ray is not installed (the ``ray`` extra).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed (pip install 'loratwin[ray]')",
                          field="ray-address") from None
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=jobs if jobs > 0 else None, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    pending: list[Any] = []
    try:
        yield ray, pending
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
