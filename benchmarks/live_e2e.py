"""End to end on a real vLLM CPU server: collect -> fit -> bench -> validate (issue 10).

Builds the tiny random Llama and its LoRA adapters (:mod:`loratwin.live.tiny`, offline), then
runs the four commands a user runs on their own deployment, each as a CLI subprocess:

1. ``loratwin profile collect --launch "vllm serve ..." --quick`` (loratwin starts and stops
   the servers of the campaign itself);
2. ``loratwin profile fit`` of the campaign folder;
3. ``loratwin bench --url`` on the configurations of :data:`CONFIGS` (servers started here
   with other ``max_loras`` / adapter counts than the campaign's, workloads at rates from
   light to starving): none of these runs is used for fitting;
4. ``loratwin validate`` of the fitted profile against those bench rows.

It prints the throughput SMAPE, mean-TTFT SMAPE and starvation agreement (issue 10's
targets: <= 8 %, <= 25 %, all rows) and writes ``summary.json`` into ``--work``. Every step
is resumable: a finished step (its output file exists) is skipped when rerun with the same
``--work``. Needs vLLM (the ``[vllm]`` extra; with the shared venv run it as
``PYTHONPATH=src /work/vllm-envs/v032/bin/python benchmarks/live_e2e.py --work DIR``).
``--short`` runs two configurations only (the CI's version, on one server).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from loratwin.live.tiny import TinyModel

#: Environment of a CPU vLLM server (GiB of KV cache; offline; runtime adapter loading).
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
}
#: Output tokens of the decode probe before each bench run.
PROBE_TOKENS = 64
#: Request lengths of every bench workload (tokens): heavy-tailed around ShareGPT-like ratios.
MEAN_INPUT_TOKENS = 96
LENGTHS = (f"{{kind: heavy-tailed, mean_input: {MEAN_INPUT_TOKENS}, mean_output: 48, "
           "std_input: 80, std_output: 40, max_total: 1024}")
#: Ranks of the bench servers' adapters (alternating).
ADAPTER_RANKS = (8, 16)


@dataclass(frozen=True)
class BenchConfig:
    """One bench run: a server (``max_loras``, ``max_cpu_loras``, adapters of alternating
    ranks 8 and 16) and a workload (``n_adapters`` used, each at ``rate`` req/s). A
    ``starve`` configuration offers at least :func:`loratwin.live.sizing.starving_rate` of
    the fitted profile (2.5 x an upper bound of its prefill capacity): a fixed rate starved
    the server on a loaded host but not on a quiet one."""

    name: str
    max_loras: int
    max_cpu_loras: int
    n_adapters: int
    rate: float
    duration_s: float = 40.0
    starve: bool = False

    def rate_for(self, prof_path: Path) -> float:
        """req/s per adapter on the server the profile at ``prof_path`` was fitted on."""
        if not self.starve:
            return self.rate
        from loratwin.live.sizing import starving_rate
        from loratwin.profile.store import load_profile

        return starving_rate(load_profile(str(prof_path)), self.n_adapters, self.rate,
                             MEAN_INPUT_TOKENS, min(ADAPTER_RANKS))

    @property
    def server_key(self) -> tuple[int, int]:
        return (self.max_loras, self.max_cpu_loras)


#: Servers and workloads none of which the campaign measured (its servers: no LoRA,
#: max_loras 4 with rank-16 slots, max_loras 1 with rank-8 slots; all of these have rank-16
#: slots and 2 or 3 slots). Rates go from light load to well beyond the server's capacity
#: (the ``starve`` ones: sized from the fitted profile, :meth:`BenchConfig.rate_for`).
CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig("l2-a2-light", 2, 6, 2, 0.4),
    BenchConfig("l2-a6-mid", 2, 6, 6, 0.25),
    BenchConfig("l2-a6-starve", 2, 6, 6, 1.5, starve=True),
    BenchConfig("l3-a3-light", 3, 4, 3, 0.3),
    BenchConfig("l3-a4-mid", 3, 4, 4, 0.5),
    BenchConfig("l3-a8-starve", 3, 4, 8, 0.8, starve=True),
)
SHORT = ("l2-a2-light", "l2-a6-starve")


def run(argv: list[str], log: Path) -> None:
    """Run one CLI step, its output into ``log``; exit with its code when it fails."""
    t0 = time.monotonic()
    with log.open("w") as fh:
        code = subprocess.call(argv, stdout=fh, stderr=subprocess.STDOUT)
    # the machine's load: on a shared host the CPU server's step times follow it
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  {argv[3]}: {time.monotonic() - t0:.0f} s, load average {load} (log {log})",
          flush=True)
    if code != 0:
        sys.exit(f"error: step failed with exit code {code}; see {log}")


def loratwin(*args: str) -> list[str]:
    return [sys.executable, "-m", "loratwin", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(base: Path, port: int) -> list[str]:
    from loratwin.live.vllm_cli import command

    return command(["serve", str(base), "--host", "127.0.0.1", "--port", str(port),
                    "--max-model-len", "2048"])


def collect_and_fit(work: Path, tiny: TinyModel, point_s: float, budget_min: float) -> Path:
    """Steps 1 and 2; the fitted profile's path."""
    cal, prof_dir = work / "cal", work / "profile"
    prof = prof_dir / "tiny-llama-cpu.json"
    if prof.is_file():
        return prof
    argv = [*serve_command(tiny.base, free_port()), "--lora-modules",
            *[f"r{r}={p}" for r, p in tiny.adapters.items()]]
    cmd = " ".join(argv)
    env_flags = [x for k, v in SERVER_ENV.items() for x in ("--env", f"{k}={v}")]
    print(f"profile collect: loratwin profile collect --out {cal} --launch \"{cmd}\" --quick",
          flush=True)
    run(loratwin("profile", "collect", "--out", str(cal), "--launch", cmd, *env_flags,
                 "--quick", "--point-seconds", str(point_s), "--budget", str(budget_min),
                 "--model-name", "tiny-llama-cpu"), work / "collect.log")
    print(f"profile fit: loratwin profile fit {cal} -o {prof_dir}", flush=True)
    run(loratwin("profile", "fit", str(cal), "-o", str(prof_dir), "--jobs", "1"),
        work / "fit.log")
    return prof


def workload_yaml(cfg: BenchConfig, seed: int, rate: float) -> str:
    lines = "\n".join(f"  - {{id: b{i}, rank: {8 if i % 2 == 0 else 16}, rate: {rate:.4g}}}"
                      for i in range(cfg.n_adapters))
    return (f"adapters:\n{lines}\nlengths: {LENGTHS}\narrivals: {{process: poisson}}\n"
            f"duration_s: {cfg.duration_s}\nseed: {seed}\n")


def campaign_max_num_seqs(work: Path) -> int:
    """``max_num_seqs`` of the campaign's servers (``cal/campaign.json``): the bench servers
    run with the same value, stated on their command line and to ``bench``, so the bench rows
    describe the servers the profile was fitted on (a CPU server's default is 128, a GPU's
    256; ``bench --url`` cannot ask a server which it is)."""
    state = json.loads((work / "cal" / "campaign.json").read_text())
    return int(state["max_num_seqs"])


def bench_server(work: Path, tiny: TinyModel, key: tuple[int, int], cfgs: list[BenchConfig],
                 seed: int, prof: Path) -> None:
    """Start one server of ``key`` = (max_loras, max_cpu_loras), bench each config on it."""
    from loratwin.live.launcher import LaunchedServer

    todo = [c for c in cfgs if not (work / "bench" / c.name / "run.csv").is_file()]
    if not todo:
        return
    n = max(c.n_adapters for c in cfgs)
    seqs = str(campaign_max_num_seqs(work))
    argv = [*serve_command(tiny.base, free_port()),
            "--enable-lora", "--max-loras", str(key[0]), "--max-cpu-loras", str(key[1]),
            "--max-lora-rank", "16", "--max-num-seqs", seqs, "--lora-modules",
            *[f"b{i}={tiny.adapters[8 if i % 2 == 0 else 16]}" for i in range(n)]]
    log = work / "logs" / f"bench-l{key[0]}-c{key[1]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with LaunchedServer(argv, log, env=SERVER_ENV, startup_timeout_s=900) as server:
        print(f"server max_loras={key[0]} max_cpu_loras={key[1]}: up in "
              f"{time.monotonic() - t0:.0f} s ({' '.join(argv)})", flush=True)
        for c in todo:
            wl = work / "bench" / f"{c.name}.yaml"
            wl.parent.mkdir(parents=True, exist_ok=True)
            probe(server.url, work / "bench" / f"{c.name}.probe.json", seed)
            wl.write_text(workload_yaml(c, seed, c.rate_for(prof)))
            flags = ["--max-cpu-loras", str(key[1]), "--max-lora-rank", "16",
                     "--max-num-seqs", seqs, "--device", "cpu"]
            print(f"bench {c.name}: loratwin bench {wl} --url {server.url} --out "
                  f"{work / 'bench' / c.name} {' '.join(flags)}", flush=True)
            run(loratwin("bench", str(wl), "--url", server.url, "--out",
                         str(work / "bench" / c.name), *flags),
                work / "bench" / f"{c.name}.log")


def probe(url: str, out: Path, seed: int) -> None:
    """The campaign's decode probe (1 sequence of rank 16, 64 tokens) right before a bench
    run: on a shared host the step times drift with its load, and this measures by how much
    since the campaign (``decode_step_s`` of its rank-16 LoRA server)."""
    import asyncio

    from loratwin.live.client import OK, PlannedRequest, RunLog, run_requests

    log = RunLog()
    asyncio.run(run_requests(url, [PlannedRequest(0, 0.0, "b1", 1, PROBE_TOKENS)], 120.0,
                             seed=seed, max_concurrency=1, log=log))
    rec = log.records[0] if log.records else None
    step = (decode_step_ms(rec.latency_s, rec.ttft_s, rec.completion_tokens or PROBE_TOKENS)
            if rec is not None and rec.status == OK else float("nan"))
    out.write_text(json.dumps({"decode_step_ms": step, "load_average": os.getloadavg()}) + "\n")


def decode_step_ms(latency_s: float, ttft_s: float, output_tokens: int) -> float:
    """Mean decode step of one streamed request, ms: ``(latency - TTFT) / (output - 1)``.

    The earlier probe took the request's mean inter-chunk gap, which was 0 whenever the
    server sent several tokens in one chunk (issue 10)."""
    return 1e3 * (latency_s - ttft_s) / (output_tokens - 1) if output_tokens > 1 else math.nan


def drift(work: Path, names: list[str]) -> dict[str, float]:
    """Probe step time before each bench run / the campaign's (rank-16 LoRA server)."""
    state = json.loads((work / "cal" / "campaign.json").read_text())
    ref = [v["probe"]["decode_step_s"] * 1e3 for k, v in state["servers"].items()
           if k.startswith("lora-") and k.endswith("-r16") and "probe" in v]
    out = {}
    for n in names:
        path = work / "bench" / f"{n}.probe.json"
        if ref and path.is_file():
            out[n] = json.loads(path.read_text())["decode_step_ms"] / ref[0]
    return out


def collect_rows(work: Path, cfgs: list[BenchConfig]) -> Path:
    """The bench rows in one CSV (paths made absolute so validate finds the traces)."""
    import pandas as pd

    rows = []
    for c in cfgs:
        d = work / "bench" / c.name
        row = pd.read_csv(d / "run.csv")
        for col in ("trace_file", "adapters_file"):
            if col in row:
                row[col] = [str((d / v).resolve()) if isinstance(v, str) else v
                            for v in row[col]]
        rows.append(row)
    out = work / "bench_runs.csv"
    pd.concat(rows, ignore_index=True).to_csv(out, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="Working folder (resumable)")
    ap.add_argument("--short", action="store_true", help="Two configurations, one server")
    ap.add_argument("--point-seconds", type=float, default=6.0)
    ap.add_argument("--budget", type=float, default=40.0, help="Campaign budget, min")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from loratwin.live.tiny import build_tiny_model

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tiny_dir = work / "tiny"
    tiny = build_tiny_model(tiny_dir)
    prof = collect_and_fit(work, tiny, args.point_seconds, args.budget)
    cfgs = [c for c in CONFIGS if not args.short or c.name in SHORT]
    for key in sorted({c.server_key for c in cfgs}):
        bench_server(work, tiny, key, [c for c in cfgs if c.server_key == key], args.seed,
                     prof)
    runs = collect_rows(work, cfgs)
    out = work / "validate.json"
    print(f"validate: loratwin validate {runs} --model {prof} --json {out}", flush=True)
    run(loratwin("validate", str(runs), "--model", str(prof), "--json", str(out), "--jobs",
                 "1"), work / "validate.log")
    names = [c.name for c in cfgs]
    report(json.loads(out.read_text()), names, drift(work, names), work, time.monotonic() - t0,
           side_columns(runs))


def side_columns(runs: Path) -> dict[str, list[float]]:
    """Per bench row: vLLM's server-side mean TTFT and the client's mean send lag (ms)."""
    import pandas as pd

    df = pd.read_csv(runs)
    return {c: [float(v) for v in df[c]] if c in df else [math.nan] * len(df)
            for c in ("server_mean_ttft_ms", "mean_send_lag_ms")}


def report(val: dict, names: list[str], slow: dict[str, float], work: Path,
           wall_s: float, side: dict[str, list[float]]) -> None:
    """Print the per-run table and the scores; write ``summary.json``. ``TTFT srv`` is
    vLLM's own TTFT histogram over the run (no HTTP streaming, no client), ``lag`` the
    client's mean send lag (ms)."""
    from loratwin.twin.validate import smape

    s = val["summary"]
    srv = side["server_mean_ttft_ms"]
    print(f"\n{'run':<16}{'ml':>3}{'ad':>4}{'req/s':>7}{'thr real':>10}{'thr twin':>10}"
          f"{'ITL real':>9}{'ITL twin':>9}{'TTFT real':>11}{'TTFT twin':>11}{'TTFT srv':>10}"
          f"{'lag':>6}{'starved r/t':>13}{'probe x':>9}")
    for r in val["runs"]:
        i = int(r["row"])
        print(f"{names[int(r['row'])]:<16}{r['max_loras']:>3}{r['served_adapters']:>4}"
              f"{r['sum_rate_req_s']:>7.2f}{r['real_total_throughput']:>10.1f}"
              f"{r['twin_total_throughput_tok_s']:>10.1f}{r['real_mean_itl_ms']:>9.1f}"
              f"{r['twin_mean_itl_ms']:>9.1f}{r['real_mean_ttft_ms']:>11.0f}"
              f"{r['twin_mean_ttft_ms']:>11.0f}{srv[i]:>10.0f}{side['mean_send_lag_ms'][i]:>6.0f}"
              f"{str(r['real_starvation'])[0] + '/' + str(r['twin_starvation'])[0]:>13}"
              f"{slow.get(names[int(r['row'])], float('nan')):>9.2f}")
    st = val["runs"]
    agree = sum(bool(r["real_starvation"]) == bool(r["twin_starvation"]) for r in st)
    twin_ttft = np.array([r["twin_mean_ttft_ms"] for r in st], float)
    srv_ttft = np.array([srv[int(r["row"])] for r in st], float)
    ok = np.isfinite(twin_ttft) & np.isfinite(srv_ttft)
    srv_smape = smape(twin_ttft[ok], srv_ttft[ok]) if ok.any() else math.nan
    summary = {"throughput_smape_pct": s["throughput_smape_pct"],
               "ttft_vs_server_side_smape_pct": srv_smape,
               "server_mean_ttft_ms": srv, "mean_send_lag_ms": side["mean_send_lag_ms"],
               "load_average_end": os.getloadavg(),
               "ttft_smape_pct": s["ttft_smape_pct"], "itl_smape_pct": s["itl_smape_pct"],
               "starvation_agreement": f"{agree}/{len(st)}", "n_runs": s["n_runs"],
               "probe_step_time_vs_campaign": slow, "wall_s": wall_s}
    print(f"\nthroughput SMAPE {s['throughput_smape_pct']:.1f} % (target <= 8), mean TTFT "
          f"SMAPE {s['ttft_smape_pct']:.1f} % (<= 25), ITL SMAPE {s['itl_smape_pct']:.1f} %, "
          f"starvation agreement {agree}/{len(st)}; wall {wall_s / 60:.1f} min; mean TTFT "
          f"SMAPE against vLLM's server-side TTFT {srv_smape:.1f} %")
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
