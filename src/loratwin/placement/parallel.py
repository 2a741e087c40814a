"""Running independent twin simulations of placed GPUs in parallel: joblib or a Ray cluster.

Twin confirmations of borderline GPUs and ``--verify`` runs are independent simulations, so
they go to local worker processes (joblib, ``jobs``) or, with ``ray_address``, to a Ray
cluster as ``loratwin dataset`` does (``auto``, ``ray://host:10001``, or ``local`` to start
one on this machine; loratwin must be installed on the workers). Results come back in the
order of the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")


def run_tasks(fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], *, jobs: int = 1,
              ray_address: str | None = None) -> list[R]:
    """``[fn(*t) for t in tasks]``, in parallel.

    Parameters
    ----------
    jobs:
        Local worker processes (joblib; -1 = all cores); with ``ray_address="local"`` the
        CPUs of the local Ray instance.
    ray_address:
        Ray cluster address, or None for joblib.

    Raises
    ------
    ConfigError
        Ray asked for but not installed.
    """
    if not tasks:
        return []
    if ray_address:
        return _run_ray(fn, tasks, ray_address, jobs)
    if jobs == 1 or len(tasks) == 1:
        return [fn(*t) for t in tasks]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=min(jobs, len(tasks)) if jobs > 0 else jobs)(
        delayed(fn)(*t) for t in tasks))


def _run_ray(fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], address: str,
             jobs: int) -> list[R]:
    from loratwin.raysession import ray_session

    with ray_session(address, jobs) as (ray, pending):
        remote = ray.remote(fn)
        pending[:] = [remote.remote(*t) for t in tasks]
        out = ray.get(pending)
        pending.clear()
        return list(out)
