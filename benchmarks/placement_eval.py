"""Placement evaluation: GPUs per algorithm, starved GPUs by twin verification, placement time.

Setups
------
- **Azure trace** (the papers' setups): adapters synthesised from the bundled Azure LLM
  inference conversation trace (:func:`loratwin.workload.from_trace.adapters_from_trace`,
  Dirichlet(0.5) popularity, per-adapter rates and mean lengths from the requests each one
  gets), rank mixes {8, 16} and {8, 16, 32} (dealt cyclically), 32 / 128 / 512 / 1152
  adapters, the trace's rates multiplied by 4 and 16 (about 30,000 and 120,000 tok/s offered,
  i.e. a few and about ten GPUs).
- **Synthetic heavy-tailed**: ranks {8, 16, 32} uniformly at random, ShareGPT lengths,
  rates Zipf (rate of the i-th most popular adapter proportional to 1 / i^1.1) or log-normal
  (sigma 2), 100 and 1,000 adapters, total rate scaled to about eight backbone GPUs of load.

For each setup every algorithm places the adapters as ``loratwin place`` does (``loratwin``
with its twin confirmations of borderline GPUs, so its placement time includes those runs;
the baselines' includes the lower bound's twin run); every GPU is then simulated in the twin
(:func:`loratwin.placement.verify.verify_placement`, window ``--duration``, default 3,600 s
  as in the measured runs)
and a GPU counts as starved when the twin's throughput is below 0.9 x its offered load, or
failed when it cannot start. The lower bound (:mod:`loratwin.placement.bounds`) is given for
every setup and the exact optimum (:mod:`loratwin.placement.exact`) for <= 40 adapters.

Results are cached per setup in ``--cache`` (JSON lines), so the run can be split
(``--only``) and resumed; the tables are printed from the cache.

Run::

    python benchmarks/placement_eval.py                    # everything (long: ~1 h on 2 cores)
    python benchmarks/placement_eval.py --only trace-816-32-x4,zipf-100 --jobs 2
    python benchmarks/placement_eval.py --surrogate dev.npz --cache /tmp/eval.jsonl
    python benchmarks/placement_eval.py --only trace-816-2000-x8 --rerun loratwin  # after a change
    # loratwin as the default `place` (no --twin-search), the others from a copy of a cache:
    python benchmarks/placement_eval.py --cache copy.jsonl --rerun loratwin --default-place
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loratwin.placement.api import ALGORITHMS, place
from loratwin.placement.bounds import lower_bound
from loratwin.placement.exact import MAX_ADAPTERS, solve_exact
from loratwin.placement.lp_bound import lp_lower_bound
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.placement.report import summarize
from loratwin.placement.verify import verify_placement
from loratwin.profile.store import load_profile
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace
from loratwin.workload.types import Adapter


@dataclass(frozen=True)
class Setup:
    name: str
    kind: str  # "trace", "zipf" or "lognormal"
    n: int
    ranks: tuple[int, ...]
    multiplier: float = 1.0


def setups() -> list[Setup]:
    out = []
    for ranks, tag in (((8, 16), "816"), ((8, 16, 32), "81632")):
        for n in (32, 128, 512, 1152):
            for mult in (4.0, 16.0):
                out.append(Setup(f"trace-{tag}-{n}-x{mult:g}", "trace", n, ranks, mult))
        # the workloads of issue 12 (built as examples/azure-conv-512.csv)
        for n in (1024, 2000):
            for mult in (8.0, 12.0):
                out.append(Setup(f"trace-{tag}-{n}-x{mult:g}", "trace", n, ranks, mult))
    for kind in ("zipf", "lognormal"):
        for n in (100, 1000):
            out.append(Setup(f"{kind}-{n}", kind, n, (8, 16, 32)))
    return out


def adapters_of(setup: Setup, trace, profile) -> list[Adapter]:
    if setup.kind == "trace":
        return adapters_from_trace(trace, setup.n, setup.ranks, setup.multiplier, seed=0)
    rng = np.random.default_rng(1)
    if setup.kind == "zipf":
        w = 1.0 / np.arange(1, setup.n + 1) ** 1.1
        rng.shuffle(w)
    else:
        w = rng.lognormal(0.0, 2.0, setup.n)
    per_req = profile.sharegpt_mean_input_tokens + profile.sharegpt_mean_output_tokens
    total = 8 * 20000.0 / per_req  # ~ eight backbone GPUs of load, req/s
    rates = w / w.sum() * total
    ranks = rng.choice(setup.ranks, setup.n)
    return [Adapter(f"a{i:04d}", int(r), float(q)) for i, (r, q) in enumerate(zip(ranks, rates,
                                                                                 strict=True))]


def problem_of(setup: Setup, trace, model: str, pred):
    profile = load_profile(model)
    return make_problem(adapters_of(setup, trace, profile), profile, predictor=pred)


def placed(problem, algorithm: str, jobs: int, twin_search: bool = True):
    """(placement, CPU s of this process: twin runs in workers excluded); ``loratwin`` with
    the twin-judged portfolio (``--twin-search``) unless ``twin_search`` is False (then as
    the default ``loratwin place``: confirmations and the one-GPU-fewer check)."""
    c0 = time.process_time()
    p = place(problem, algorithm, jobs=jobs, twin_search=twin_search)
    return p, time.process_time() - c0


def verified_row(problem, p, cpu: float, duration: float, jobs: int) -> dict:
    v = verify_placement(problem, p, duration_s=duration, n_jobs=jobs)
    row = summarize(v).to_dict()
    row["placement_cpu_s"] = cpu
    row["notes"] = list(p.notes)
    if p.tradeoff is not None:
        row["tradeoff"] = p.tradeoff.describe()
    return row


def run_setup(setup: Setup, trace, model: str, pred, duration: float, jobs: int,
              twin_search: bool = True) -> dict:
    problem = problem_of(setup, trace, model, pred)
    lb = lower_bound(problem)
    lp = lp_lower_bound(problem)
    placements = [placed(problem, a, jobs, twin_search) for a in ALGORITHMS]
    opt = None
    if len(problem.adapters) <= MAX_ADAPTERS:
        opt = solve_exact(problem, [p for p, _ in placements], lower=lb.gpus)
    rows = [verified_row(problem, p, cpu, duration, jobs) for p, cpu in placements]
    return {
        "setup": setup.name, "adapters": setup.n, "offered_tok_s": lb.offered_tok_s,
        "lower_bound": lb.gpus, "lp_lower_bound": lp.gpus, "lp_value": lp.value,
        "optimum": None if opt is None else opt.gpus,
        "optimum_note": None if opt is None else opt.describe(), "duration_s": duration,
        "results": rows,
    }


SHORT = {"loratwin": "loratwin", "paper-greedy": "greedy", "max-backbone": "backbone",
         "least-loaded": "least-ld", "loraserve": "loraserve", "dlora-proactive": "dlora",
         "random": "random"}


def _bad(x: dict) -> int:
    return x["starved_gpus"] + x["memory_errors"]


def acceptance(r: dict) -> list[str]:
    """Issue 12's checks on one setup: loratwin starves no GPU, has no memory error, uses no
    more GPUs than any algorithm that starves none, and its worst GPU's mean TTFT is no
    higher than that of any algorithm on as many GPUs (that starves none)."""
    by = {x["algorithm"]: x for x in r["results"]}
    ours = by["loratwin"]
    fails = []
    if _bad(ours):
        fails.append(f"{_bad(ours)} starved/failed GPU(s)")
    for a, x in by.items():
        if a == "loratwin" or _bad(x):
            continue
        if x["gpus"] < ours["gpus"]:
            fails.append(f"{a} uses {x['gpus']} GPUs")
        elif (x["gpus"] == ours["gpus"]
              and x["worst_gpu_mean_ttft_ms"] < ours["worst_gpu_mean_ttft_ms"]):
            fails.append(f"{a}: worst GPU TTFT {x['worst_gpu_mean_ttft_ms']:,.0f} ms")
    return fails


def print_tables(records: list[dict]) -> None:
    algs = list(ALGORITHMS)
    print("\nGPUs (starved GPUs in the twin) per algorithm; TLB twin throughput bound, LP the "
          "LP bound, opt the exact optimum")
    head = f"| {'setup':<22} | {'tok/s':>7} | TLB | LP | opt | " + " | ".join(
        f"{SHORT[a]:>9}" for a in algs) + " | check |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in records:
        by = {x["algorithm"]: x for x in r["results"]}
        cells = [f"{by[a]['gpus']:>4} ({_bad(by[a])})".rjust(9) for a in algs]
        opt = "-" if r["optimum"] is None else str(r["optimum"])
        lp = str(r.get("lp_lower_bound", "-"))
        ok = "ok" if not acceptance(r) else "FAIL"
        print(f"| {r['setup']:<22} | {r['offered_tok_s']:>7,.0f} | {r['lower_bound']:>3} | "
              f"{lp:>2} | {opt:>3} | " + " | ".join(cells) + f" | {ok:>5} |")
    print("\nWorst GPU's mean TTFT in the twin, s (p99 TTFT of the worst GPU in brackets)")
    head = f"| {'setup':<22} | " + " | ".join(f"{SHORT[a]:>13}" for a in algs) + " |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in records:
        by = {x["algorithm"]: x for x in r["results"]}
        cells = [f"{by[a]['worst_gpu_mean_ttft_ms'] / 1e3:>5.1f} "
                 f"({by[a]['p99_ttft_ms'] / 1e3:>5.1f})" for a in algs]
        print(f"| {r['setup']:<22} | " + " | ".join(c.rjust(13) for c in cells) + " |")
    print("\nTotals over setups (placement: wall s on a shared machine / CPU s of this process)")
    print(f"| {'algorithm':<16} | GPUs | starved GPUs | setups without starvation | "
          "mean placement s | max placement s | max CPU s |")
    print("|------------------|------|--------------|---------------------------|"
          "------------------|-----------------|-----------|")
    for a in algs:
        xs = [next(x for x in r["results"] if x["algorithm"] == a) for r in records]
        gpus = sum(x["gpus"] for x in xs)
        bad = sum(_bad(x) for x in xs)
        clean = sum(_bad(x) == 0 for x in xs)
        t = [x["placement_s"] for x in xs]
        c = [x.get("placement_cpu_s", float("nan")) for x in xs]
        print(f"| {a:<16} | {gpus:>4} | {bad:>12} | {clean:>13} of {len(xs):<10} | "
              f"{np.mean(t):>16.3f} | {max(t):>15.3f} | {max(c):>9.2f} |")
    for name, key in (("twin bound", "lower_bound"), ("LP bound", "lp_lower_bound")):
        total = sum(r.get(key, 0) for r in records)
        print(f"| {name:<16} | {total:>4} | {'':>12} | {'':>25} | {'':>16} | {'':>15} | "
              f"{'':>9} |")
    fails = {r["setup"]: acceptance(r) for r in records}
    print("\nAcceptance (issue 12): " + ("every setup passes" if not any(fails.values())
                                       else "; ".join(f"{k}: {', '.join(v)}"
                                                      for k, v in fails.items() if v)))
    for r in records:
        tr = next(x for x in r["results"] if x["algorithm"] == "loratwin").get("tradeoff")
        if tr:
            print(f"  {r['setup']}: {tr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b-instruct")
    ap.add_argument("--surrogate", default=None, help="surrogate .npz (default: bundled)")
    ap.add_argument("--duration", type=float, default=3600.0, help="twin window per GPU, s")
    ap.add_argument("--jobs", type=int, default=1, help="parallel twin runs")
    ap.add_argument("--only", default=None, help="comma list of setup names")
    ap.add_argument("--cache", type=Path, default=Path("placement_eval.jsonl"))
    ap.add_argument("--list", action="store_true", help="list the setups and exit")
    ap.add_argument("--rerun", default=None,
                    help="comma list of algorithms placed and verified again in the cached "
                         "setups chosen (e.g. loratwin after a change; the others kept)")
    ap.add_argument("--default-place", action="store_true",
                    help="place loratwin as the default `loratwin place` does (no "
                         "--twin-search); use a cache of its own")
    args = ap.parse_args()
    search = not args.default_place

    all_setups = setups()
    if args.list:
        print("\n".join(s.name for s in all_setups))
        return
    chosen = all_setups
    if args.only:
        names = set(args.only.split(","))
        chosen = [s for s in all_setups if s.name in names]
    done: dict[str, dict] = {}
    if args.cache.exists():
        for line in args.cache.read_text().splitlines():
            rec = json.loads(line)
            done[rec["setup"]] = rec
    pred = SurrogatePredictor.load(args.surrogate or args.model)
    print(f"surrogate: {args.surrogate or 'bundled ' + args.model}; twin window "
          f"{args.duration:g} s")
    trace = load_azure_trace()
    for s in chosen:
        if s.name in done and args.rerun:
            t0 = time.perf_counter()
            problem = problem_of(s, trace, args.model, pred)
            rows = {x["algorithm"]: x for x in done[s.name]["results"]}
            for a in args.rerun.split(","):
                p, cpu = placed(problem, a, args.jobs, search)
                rows[a] = verified_row(problem, p, cpu, args.duration, args.jobs)
            done[s.name]["results"] = [rows[a] for a in ALGORITHMS if a in rows]
            args.cache.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
            print(f"{s.name}: {args.rerun} again in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            continue
        if s.name in done:
            continue
        t0 = time.perf_counter()
        rec = run_setup(s, trace, args.model, pred, args.duration, args.jobs, search)
        rec["surrogate"] = args.surrogate or f"bundled {args.model}"
        done[s.name] = rec
        with args.cache.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"{s.name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    print_tables([done[s.name] for s in all_setups if s.name in done])


if __name__ == "__main__":
    main()
