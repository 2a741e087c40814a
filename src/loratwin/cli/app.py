"""The ``loratwin`` command: one Typer app, one module per command group.

Errors a user can cause are turned into one line on stderr and exit code 2 (see
:func:`main`); everything already written to disk stays there.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from loratwin.errors import LoraTwinError

app = typer.Typer(
    name="loratwin",
    help="Digital twin, surrogates and GPU placement for multi-LoRA serving on vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    """Import the command modules; each one attaches its commands to :data:`app`."""
    from loratwin.cli import commands  # noqa: F401


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", str(exc))
        return f"{loc}: {msg}" if loc else msg
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``loratwin`` console script.

    Raises
    ------
    SystemExit
        0 on success, 2 on a user error (printed as ``error: <one line>``), 130 on Ctrl-C.
    """
    try:
        _register_commands()
        rc = app(args=argv, standalone_mode=False)
    except (LoraTwinError, ValidationError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to resume",
              file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.UsageError):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            raise SystemExit(2) from None
        if isinstance(exc, click.exceptions.Exit):
            raise SystemExit(exc.exit_code) from None
        raise
    # in non-standalone mode click returns (not raises) the code of an interrupted command
    if isinstance(rc, int) and rc != 0:
        if rc == 130:
            print("interrupted: finished work is kept; rerun the same command to resume",
                  file=sys.stderr)
        raise SystemExit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
