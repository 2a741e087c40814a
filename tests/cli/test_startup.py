"""Start fast (issue 16): command modules import only typer and the standard library at their
top, and the few library constants shown in help texts are repeated correctly."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "pyarrow", "yaml", "rich",
         "joblib", "highspy", "ray", "loratwin.twin", "loratwin.placement", "loratwin.surrogate",
         "loratwin.workload", "loratwin.profile", "loratwin.advisor", "loratwin.calibrate",
         "loratwin.live", "httpx", "prometheus_client")

_PROBE = """
import sys
before = set(sys.modules)
from loratwin.cli.app import _register_commands
_register_commands()
heavy = {heavy!r}
print(" ".join(sorted(m for m in set(sys.modules) - before
                      if any(m == h or m.startswith(h + ".") for h in heavy))))
"""


def test_registering_every_command_imports_nothing_heavy() -> None:
    # A fresh interpreter: this test process has imported the library already.
    out = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY)], check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [], ("a command module imports these at its top (move the import into the "
                       f"command function, see loratwin/cli/commands.py): {out}")


def test_help_constants_match_the_library() -> None:
    from loratwin.advisor.sweep import BUNDLED_PREFIX, BUNDLED_SWEEPS
    from loratwin.cli import names
    from loratwin.placement.api import ALGORITHMS
    from loratwin.placement.exact import MAX_ADAPTERS
    from loratwin.profile.store import bundled_profiles

    assert names.ALGORITHMS == ALGORITHMS
    assert names.EXACT_MAX_ADAPTERS == MAX_ADAPTERS
    assert tuple(BUNDLED_PREFIX + k for k in BUNDLED_SWEEPS) == names.BUNDLED_SWEEP_NAMES
    assert names.DEFAULT_MODEL in bundled_profiles()


_HELP_PROBE = """
import contextlib, io, sys
from loratwin.cli.app import COMMAND_MODULES, main
import loratwin.cli.commands  # every command, for the list of names below
from loratwin.cli.app import app
heavy = {heavy!r}
calls = [["--help"], ["no-such-command"]]
for name in sorted(COMMAND_MODULES):
    calls += [[name, "--help"], [name, "--no-such-flag"]]
for group in app.registered_groups:
    calls += [[group.name, c.name, "--help"] for c in group.typer_instance.registered_commands]
for argv in calls:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            main(argv)
        except SystemExit:
            pass
    bad = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
    if bad:
        print(" ".join(argv), "imported", " ".join(bad[:4]))
        break
"""


def test_help_and_refused_flags_import_nothing_heavy() -> None:
    # pydantic comes in through Typer's value coercion (typer >= 0.29) and Rich through its
    # help formatter: neither may be needed to show help or refuse a flag (issue 16).
    heavy = (*HEAVY, "pydantic", "markdown_it")
    out = subprocess.run([sys.executable, "-c", _HELP_PROBE.format(heavy=heavy)], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "", out


_TABLE_PROBE = """
import json
from loratwin.cli import commands  # noqa: F401
from loratwin.cli.app import app
found = {}
for c in app.registered_commands:
    found.setdefault(c.name, set()).add(c.callback.__module__.rsplit(".", 1)[1])
for g in app.registered_groups:
    for c in g.typer_instance.registered_commands:
        found.setdefault(g.name, set()).add(c.callback.__module__.rsplit(".", 1)[1])
print(json.dumps({k: sorted(v) for k, v in found.items()}))
"""


def test_command_table_names_the_modules_of_every_command() -> None:
    # ``loratwin NAME ...`` imports COMMAND_MODULES[NAME] alone: a command (or a group's
    # subcommand) defined in a module missing from its entry would be "No such command".
    import json

    from loratwin.cli.app import COMMAND_MODULES

    out = subprocess.run([sys.executable, "-c", _TABLE_PROBE], check=True,
                         capture_output=True, text=True).stdout
    found = json.loads(out)
    assert {k: sorted(v) for k, v in COMMAND_MODULES.items()} == {
        k: sorted(set(v) | set(COMMAND_MODULES.get(k, ()))) for k, v in found.items()}, (
        "update COMMAND_MODULES in loratwin/cli/app.py")


_SIMULATE_PROBE = """
import sys
from loratwin.cli.app import main
try:
    main(["simulate", "--adapters", {ad!r}, "--trace", {tr!r}, "--max-loras", "2",
          "--max-lora-rank", "16", "--duration", "60", "--json", {out!r}])
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = ("pandas", "scipy", "sklearn", "matplotlib", "joblib")
print("heavy:", " ".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_simulate_from_a_trace_to_json_imports_no_pandas(tmp_path) -> None:
    # issue 16: the metrics, the per-adapter table and the trace and adapter readers keep
    # numpy columns; pandas is imported only for a Parquet/CSV table output
    ad, tr, out = tmp_path / "ad.csv", tmp_path / "tr.csv", tmp_path / "o.json"
    ad.write_text("id,rank,rate\na,8,0.5\nb,16,0.5\n")
    tr.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                  + "".join(f"{i * 0.5},{'ab'[i % 2]},{20 + i},{5 + i % 3}\n"
                            for i in range(60)))
    probe = _SIMULATE_PROBE.format(ad=str(ad), tr=str(tr), out=str(out))
    res = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True)
    assert res.stdout.rstrip().splitlines()[-1] == "heavy:", res.stdout
    assert '"per_adapter"' in out.read_text()


def test_simulate_process_ends_fast_with_its_output_complete(tmp_path) -> None:
    # FAST_EXIT_COMMANDS: `python -m loratwin simulate` skips the interpreter's teardown;
    # its table, its "wrote" line and its JSON must still be complete, its exit code 0
    ad, out = tmp_path / "ad.csv", tmp_path / "o.json"
    ad.write_text("id,rank,rate\na,8,0.5\nb,16,0.5\n")
    res = subprocess.run([sys.executable, "-m", "loratwin", "simulate", "--adapters", str(ad),
                          "--max-loras", "2", "--max-lora-rank", "16", "--duration", "30",
                          "--json", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith(f"wrote {out}")
    assert "completed / arrivals" in res.stdout
    import json

    assert json.loads(out.read_text())["per_adapter"][1]["adapter_id"] == "b"
