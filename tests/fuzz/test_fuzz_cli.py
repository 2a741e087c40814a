"""Malformed input for every command, through the installed ``loratwin`` script (issue 9).

For each command of :mod:`tests.fuzz.registry`, Hypothesis draws batches of bad-input cases
(derandomized: the same cases every run); each case runs ``loratwin`` in a subprocess in a
fresh folder, two at a time. Every case must end with exit code 2 and one ``error:`` line, no
traceback, no hang, and no output file left behind. ``benchmarks/fuzz_cli.py`` runs the same
generators for >= 1,000 cases.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.cases import Case, loratwin_script, run_case
from tests.fuzz.registry import REGISTRY, strategy

SCRIPT = loratwin_script()
BATCH = 4        # cases per Hypothesis example, run two at a time
EXAMPLES = 2     # examples per command: 8 cases per command (24 commands: 192 cases; 8 per
#                  command took ~1,050 s of a loaded 2-core run, over the suite's 10 min;
#                  benchmarks/fuzz_cli.py runs >= 1,000)

pytestmark = pytest.mark.skipif(
    SCRIPT is None, reason="the loratwin console script is not installed in this environment "
                           "(pip install -e .)")


def _check(cases: list[Case]) -> None:
    assert SCRIPT is not None
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, SCRIPT), cases))
    bad = [o for o in outcomes if o.verdict != "ok"]
    assert not bad, "\n".join(f"{o.verdict} (rc={o.returncode}): {o.case.describe()}\n"
                              f"    stderr: {o.stderr.strip()[-400:]!r}" for o in bad)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_bad_input_is_refused_in_one_line(name: str) -> None:
    # no shrinking: each case is a process of about a second, and the report names the case
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy(name), min_size=BATCH, max_size=BATCH))
    def prop(cases: list[Case]) -> None:
        _check(cases)

    prop()
