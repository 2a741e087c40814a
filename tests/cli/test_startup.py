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
