"""The ``loratwin`` command: one Typer app, one module per command group.

Every exception that leaves a command is turned into one line on stderr (see :func:`main`):

* bad input (a :class:`~loratwin.errors.LoraTwinError`, a usage error Typer raises for an
  unknown flag or a bad value, a missing or unreadable file): ``error: ...`` naming the
  field, file or flag, exit code 2;
* anything else is an internal failure: ``error: internal error (...)`` with a hint to rerun
  with ``--debug``, exit code 1; ``--debug`` (anywhere on the command line, or
  ``LORATWIN_DEBUG=1``) prints the full traceback instead;
* Ctrl-C: exit code 130; everything already written to disk stays there.

This module imports only Typer and the standard library, so that ``loratwin --help`` and a
refused flag are fast (issue 16); the command modules follow the same rule (``commands.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Sequence

import typer
from typer.core import TyperGroup

from loratwin.errors import LoraTwinError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "LORATWIN_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class LoraTwinGroup(TyperGroup):
    """A command group whose ``--help`` flag is ``False`` when absent.

    Typer (0.29) coerces every parameter value through a pydantic ``TypeAdapter`` except a
    ``bool`` flag whose value is already a ``bool``; a group's help flag is ``None`` when not
    given, so ``loratwin place --help`` and ``loratwin place --bogus`` imported pydantic for
    the root's help flag alone (0.15 s of 0.45 s, issue 16). Pass ``cls=LoraTwinGroup`` to
    every ``typer.Typer`` group.
    """

    def get_help_option(self, ctx: typer.Context) -> typer.core.TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.default = False
        return option


app = typer.Typer(
    name="loratwin",
    cls=LoraTwinGroup,
    help="Digital twin, surrogates and GPU placement for multi-LoRA serving on vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help screens: Rich's help formatter (typer.rich_utils, markdown-it) costs more
    # than the whole rest of ``loratwin --help`` (issue 16). Command output still uses Rich.
    rich_markup_mode=None,
)

# The command modules that define each top-level command, so that ``loratwin place ...``
# imports place's module alone (issue 16). A group lists every module that adds a subcommand
# to it. A name missing here still works (every module is imported, ``commands.py``);
# ``tests/cli/test_startup.py`` checks this table against the registered commands.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "advise": ("advise_cmd",),
    "bench": ("bench_cmd",),
    "compare": ("place_cmd",),
    "dataset": ("surrogate_cmd",),
    "place": ("place_cmd",),
    "predict": ("surrogate_cmd",),
    "profile": ("profile_cmd",),
    "replan": ("replan_cmd",),
    "report": ("report_cmd",),
    "simulate": ("simulate_cmd",),
    "surrogate": ("surrogate_cmd", "universal_cmd"),
    "train": ("surrogate_cmd",),
    "validate": ("validate_cmd",),
    "workload": ("workload_cmd", "replan_cmd"),
}


# Commands whose process ends right after the command returns, without the interpreter's
# teardown (clearing every module of numpy, pyarrow, pydantic, ...; 0.09 s wall after those
# imports, 0.2 s on a loaded 2-core machine, issue 16): they start no thread, subprocess or
# atexit work of their own, and everything they write is closed before they return.
FAST_EXIT_COMMANDS: frozenset[str] = frozenset({"simulate"})


def command_group(help: str) -> typer.Typer:
    """A ``typer.Typer`` for a command group (``app.add_typer(group, name=...)``), built the
    way :data:`app` is (plain help, :class:`LoraTwinGroup`, no completion or Rich tracebacks).
    """
    return typer.Typer(help=help, cls=LoraTwinGroup, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None)


@app.callback()
def _root(
    debug: bool = typer.Option(False, DEBUG_FLAG, help="Show the full traceback of an "
                               "internal error (also LORATWIN_DEBUG=1); allowed anywhere "
                               "on the command line"),
) -> None:
    """Digital twin, surrogates and GPU placement for multi-LoRA serving on vLLM."""


def _register_commands() -> None:
    """Import every command module; each one attaches its commands to :data:`app`."""
    from loratwin.cli import commands  # noqa: F401


def _register_for(args: Sequence[str]) -> None:
    """Import the modules of the command named in ``args`` (all of them for the main help
    screen, a root option or a name not in :data:`COMMAND_MODULES`)."""
    modules = COMMAND_MODULES.get(args[0]) if args and not args[0].startswith("-") else None
    if modules is None:
        _register_commands()
        return
    for name in modules:
        importlib.import_module(f"loratwin.cli.{name}")


def _split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from the arguments (before a ``--`` separator)."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    debug = DEBUG_FLAG in args[:end]
    if debug:
        args = [a for a in args[:end] if a != DEBUG_FLAG] + args[end:]
    return args, debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _validation_message(exc: BaseException) -> str | None:
    """One line for a pydantic ``ValidationError`` (without importing pydantic)."""
    pyd = sys.modules.get("pydantic")
    if pyd is None or not isinstance(exc, pyd.ValidationError):
        return None
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


_USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                   FileExistsError)


def _os_message(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
    return f"{name}: {reason.lower()}" if name else reason.lower()


def _usage_message(exc: typer.TyperException) -> str:
    """``No such option: --bogus (see 'loratwin place --help')``."""
    msg = _first_line(exc.format_message()) or "invalid usage"
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f"{msg} (see '{path} --help')" if path else msg


def _is_help_screen(exc: typer.TyperException) -> bool:
    """A group called without a subcommand shows its help and raises a usage error whose
    message is the help text, or empty when Rich has already printed it."""
    return len(exc.format_message().strip().splitlines()) != 1


def _fail(message: str, code: int) -> SystemExit:
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(code)


def _internal(exc: BaseException, debug: bool) -> SystemExit:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
        return SystemExit(EXIT_INTERNAL_ERROR)
    detail = _first_line(str(exc))
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return _fail(f"internal error ({what}); rerun with --debug for the traceback",
                 EXIT_INTERNAL_ERROR)


def _interrupted() -> SystemExit:
    print("interrupted: finished work is kept; rerun the same command to resume",
          file=sys.stderr)
    return SystemExit(EXIT_INTERRUPTED)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: object = None, line: str | None = None) -> None:
    print(f"warning: {_first_line(str(message))}", file=sys.stderr)


def _run(args: list[str], debug: bool) -> int:
    """Run the app; return its exit code or raise ``SystemExit`` after printing one line."""
    try:
        _register_for(args)
        rc = app(args=args, standalone_mode=False, prog_name="loratwin")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise _interrupted() from None
    except LoraTwinError as exc:
        raise _fail(_first_line(str(exc)) or type(exc).__name__, EXIT_USER_ERROR) from None
    except typer.TyperException as exc:
        if _is_help_screen(exc):
            if exc.format_message().strip():
                print(exc.format_message().rstrip(), file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        if exc.exit_code == EXIT_USER_ERROR:
            raise _fail(_usage_message(exc), EXIT_USER_ERROR) from None
        raise _internal(exc, debug) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise _fail("aborted", EXIT_INTERNAL_ERROR) from None
    except _USER_OS_ERRORS as exc:
        if debug:
            raise _internal(exc, debug) from None
        raise _fail(_os_message(exc), EXIT_USER_ERROR) from None
    except BrokenPipeError:
        # stdout closed early (``loratwin ... | head``): nothing left to tell anyone
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        raise SystemExit(EXIT_INTERNAL_ERROR) from None
    except Exception as exc:
        pyd_msg = _validation_message(exc)
        if pyd_msg is not None and not debug:
            raise _fail(pyd_msg, EXIT_USER_ERROR) from None
        raise _internal(exc, debug) from None
    # non-standalone Typer returns (not raises) the code of a command that called Exit
    return rc if isinstance(rc, int) else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``loratwin`` console script.

    Parameters
    ----------
    argv:
        Arguments without the program name (default: ``sys.argv[1:]``).

    Raises
    ------
    SystemExit
        0 on success, 2 on bad input (printed as ``error: <one line>``), 1 on an internal
        failure (one line and a hint to rerun with ``--debug``, which prints the traceback),
        130 on Ctrl-C.

    Run as the process itself (``argv`` not given: the console script, ``python -m
    loratwin``), a command of :data:`FAST_EXIT_COMMANDS` that succeeded ends the process
    with ``os._exit`` once stdout and stderr are flushed.
    """
    args, debug = _split_debug(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _one_line_warning
        rc = _run(args, debug)
    if rc == EXIT_INTERRUPTED:
        raise _interrupted()
    if argv is None and rc == 0 and args[:1] and args[0] in FAST_EXIT_COMMANDS:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:  # stdout closed early, as in _run
            os._exit(EXIT_INTERNAL_ERROR)
        os._exit(0)
    if rc != 0:
        raise SystemExit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
