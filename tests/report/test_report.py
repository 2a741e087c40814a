"""``loratwin report`` and ``compare --html``: one self-contained HTML file with the summary,
the per-GPU table and the figures; checked as text and, where Chromium is installed, as a
screenshot that must not be blank."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import loratwin.placement.bounds as bounds
import loratwin.placement.predictor as predictor_mod
from loratwin.cli import report_cmd  # noqa: F401  (registers the command)
from loratwin.report.html import placement_report
from loratwin.workload.adapters import save_adapters_csv
from tests.cli_run import run_cli
from tests.placement.conftest import AnalyticPredictor, make_adapters

from .browser import find_browser, screenshot
from .plans import plan_doc

EXTERNAL = re.compile(
    r"""(<script|<link|<iframe|<img|@import|(src|href)\s*=\s*["']?(https?:|//))""", re.IGNORECASE)


def _write(tmp_path: Path, doc: object, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_report_is_self_contained_with_every_part(tmp_path: Path) -> None:
    plan = _write(tmp_path, plan_doc(3))
    out = tmp_path / "sub" / "report.html"
    assert run_cli(["report", str(plan), "-o", str(out)]) == 0
    html = out.read_text()
    assert not EXTERNAL.search(html)
    assert html.count("<svg") == 4  # throughput, latency, ranks, time series
    for text in ("Per GPU", "lower bound", "objective", "fewest GPUs", "llama-3.1-8b-instruct",
                 "measured", "running requests", "SLO 2000 ms", "twin tok/s"):
        assert text in html, text
    rows = re.findall(r"<tr><td>(\d+)</td>", html)
    assert rows == ["0", "1", "2"]
    assert "Estimated" not in html


def test_report_without_verification_and_estimated_profile(tmp_path: Path) -> None:
    html = placement_report(plan_doc(2, verified=False, kind="prior"))
    assert "Estimated" in html and "estimated (prior)" in html
    assert html.count("<svg") == 3 and "twin tok/s" not in html and "not run" in html


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a placement plan"),
    ('{"servers": []}', "no servers"),
    ('{"servers": [{"adapters": ["a"], "ranks": [8, 16]}]}', "one length"),
    ('{"servers": [{"adapters": ["a"], "ranks": ["x"]}]}', "integers"),
    ('{"servers": [{"adapters": ["a"], "ranks": [8], "predicted": 3}]}', "must be an object"),
    ('{"servers": [{"adapters": ["a"], "ranks": [8], "verified": {"timeseries": '
     '{"t_s": [1], "running": []}}}]}', "one length"),
])
def test_report_bad_plan_is_one_error_line(tmp_path: Path, content: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "bad.json"
    plan.write_text(content)
    assert run_cli(["report", str(plan), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_report_output_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _write(tmp_path, plan_doc(1))
    assert run_cli(["report", str(plan), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert run_cli(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "r.html")]) == 2


def _non_blank(png: Path) -> tuple[float, int]:
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    ink = float((img.min(axis=2) < 0.9).mean())
    colours = len(np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0))
    return ink, colours


@pytest.mark.skipif(find_browser() is None, reason="no chromium installed (apt-get install -y "
                                                   "chromium; .ci/run installs it)")
def test_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(placement_report(plan_doc(4)))
    png = screenshot(html, tmp_path / "report.png", width=1200, height=1800)
    ink, colours = _non_blank(png)
    assert ink > 0.03, f"only {ink:.1%} of the page has ink"
    assert colours > 50  # text, bars in several colours, lines: not a blank or one-tone page


@pytest.fixture()
def small_workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(predictor_mod, "load_predictor",
                        lambda profile, surrogate=None: AnalyticPredictor())
    monkeypatch.setattr(bounds, "CAPACITY_WINDOW_S", 300.0)
    return save_adapters_csv(make_adapters(12, 40.0, ranks=(8, 16), seed=5),
                             tmp_path / "adapters.csv")


def test_compare_html_has_every_algorithm(small_workload: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    assert run_cli(["compare", str(small_workload), "--algorithms", "loratwin,least-loaded",
                    "--no-optimum", "--no-confirm", "--duration", "60", "--html",
                    str(out)]) == 0
    html = out.read_text()
    assert not EXTERNAL.search(html)
    assert 'id="plan-0"' in html and 'id="plan-1"' in html
    assert "least-loaded" in html and html.count("running requests") == 2
