"""Rich progress bars with time remaining for the long steps of the commands.

Rich is imported inside the function, so that importing a command module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "") -> Iterator[
        Callable[..., None]]:
    """A bar over ``total`` units (``None``: not known yet) on the command's console; yields
    ``advance(n=1, **update)``, where ``update`` takes the keywords of Rich's
    ``Progress.update`` (``total=``, ``completed=``, ``description=``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from loratwin.cli.common import console

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn(unit), TimeElapsedColumn(), TextColumn("eta"),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: float = 1, **update: Any) -> None:
            if update:
                progress.update(task, **update)
            if n:
                progress.advance(task, n)

        yield advance


@contextmanager
def lazy_progress(description: str, unit: str = "") -> Iterator[Callable[[int, int], None]]:
    """A bar that appears only once work is reported: yields ``report(done, total)`` (the
    bar shows ``done`` of ``total`` ``unit``); nothing is drawn if it is never called (say,
    when the result was cached)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        bar: list[Callable[..., None]] = []

        def report(done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(progress_bar(description, total, unit)))
            bar[0](0, total=total, completed=done)

        yield report
