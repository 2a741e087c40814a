"""Imports every command module so that their ``@app.command`` decorators run.

Adding a command
----------------
1. Write ``loratwin/cli/<name>_cmd.py`` that attaches its command(s) to the app::

       from __future__ import annotations

       from pathlib import Path

       import typer

       from loratwin.cli.app import app


       @app.command("report")
       def report_cmd(plan: Path = typer.Argument(..., help="Placement JSON")) -> None:
           \"\"\"One line of help.\"\"\"
           from loratwin.cli.common import check_output_file, console   # imports go HERE
           from loratwin.placement.report import ...

   (a group: ``x_app = command_group("help")`` from ``loratwin.cli.app``,
   ``app.add_typer(x_app, name="x")``).
2. Add the module to the import list below (one line, alphabetical) and the command name(s)
   to ``COMMAND_MODULES`` in ``loratwin/cli/app.py`` (``loratwin NAME`` imports those modules
   alone).

The rule that keeps ``loratwin --help`` and a refused flag under 0.4 s: **at module level a
command module imports only typer, the standard library, ``loratwin.cli.app``,
``loratwin.cli.common``, ``loratwin.cli.names`` and ``loratwin.errors``**; everything else
(numpy, pandas, rich, pydantic, the library) is imported inside the command function that uses
it. Constants shown in help texts live in ``loratwin/cli/names.py``. ``tests/cli/test_startup.py``
fails, naming the module, when a command module imports something heavy at its top.

Input errors are raised as ``loratwin.errors.ConfigError`` / ``DataError`` (one line, exit 2);
check output paths with ``check_output_file`` / ``check_output_dir`` before long work and write
them with ``write_json`` / ``atomic_output``. Register the command's malformed-input generator
in ``tests/fuzz/registry.py`` (see that module).
"""

from loratwin.cli import (  # noqa: F401
    advise_cmd,
    bench_cmd,
    place_cmd,
    profile_cmd,
    replan_cmd,
    report_cmd,
    simulate_cmd,
    surrogate_cmd,
    universal_cmd,
    validate_cmd,
    workload_cmd,
)
