"""Reporting of placements: Rich tables, JSON documents, ``vllm serve`` scripts, and the
algorithm comparison (table, JSON, plot).

Aggregates of :func:`summarize` (``loratwin compare``): throughput is summed over GPUs; mean
ITL and mean TTFT are averaged over GPUs weighted by each GPU's total throughput (tok/s), a
proxy for its share of the tokens (the twin's per-GPU verification reports no request
counts); GPUs with a memory error (no throughput) carry no weight. Without verification the
surrogate's predictions are used instead and ``verified`` is False.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from loratwin.placement.types import GpuAssignment, Placement
from loratwin.profile.model import Profile

#: Ranks vLLM 0.8.5 accepts for ``--max-lora-rank`` (``vllm/config.py``, ``LoRAConfig``).
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 320, 512)


# ----------------------------------------------------------------------------- one placement


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:,.{digits}f}"
    return str(v)


def adapter_shares(problem_rates: dict[str, float], gpu: GpuAssignment) -> list[tuple[str, float]]:
    """(id, share of the adapter's traffic on this GPU) per served adapter or piece."""
    out = []
    for a in gpu.adapters:
        total = problem_rates.get(a.id, a.rate)
        out.append((a.id, a.rate / total if total > 0 else 1.0))
    return out


def placement_table(placement: Placement, rates: dict[str, float] | None = None) -> Table:
    """One row per GPU: adapter count, ranks, load, vLLM flags and the surrogate's predictions
    (mean and p99 TTFT in s so that the table fits 80 columns; the ids and the predicted
    throughput are in ``--json``)."""
    table = Table(title=f"{placement.algorithm}: {placement.gpus} GPU(s), placed in "
                        f"{placement.placement_s:.2f} s", header_style="bold",
                  box=None, padding=(0, 1), pad_edge=False)
    for c in ("GPU", "\nadap-\nters", "\n\nranks", "\n\nreq/s", "\nmax_\nloras",
              "max_\ncpu_\nloras", "max_\nlora_\nrank", "\nITL\nms", "\nTTFT\ns",
              "p99\nTTFT\ns", "\np(st-\narve)", "\nhead-\nroom"):
        table.add_column(c, justify="left" if c.endswith("ranks") else "right", no_wrap=True)
    split = {i for g in placement.servers for i, s in adapter_shares(rates or {}, g)
             if s < 1 - 1e-9}
    for k, g in enumerate(placement.servers):
        ranks = sorted({a.rank for a in g.adapters})
        p = g.predicted
        n_split = sum(a.id in split for a in g.adapters)
        table.add_row(
            str(k), f"{len(g.adapters)}" + ("*" if n_split else ""),
            ",".join(map(str, ranks)), _fmt(g.total_rate, 2), str(g.max_loras),
            str(g.max_cpu_loras), str(g.max_lora_rank),
            _fmt(p.get("mean_itl_ms")), _fmt(p.get("mean_ttft_ms", math.nan) / 1e3, 1),
            _fmt(p.get("p99_ttft_ms", math.nan) / 1e3, 1),
            _fmt(p.get("starvation_probability"), 2), _fmt(p.get("headroom"), 2),
        )
    if split:
        table.caption = f"* serves a share of {len(split)} split adapter(s) (see --json)"
    return table


def verified_table(placement: Placement) -> Table:
    """One row per GPU: the twin's verification (throughput, latencies, starvation, memory)."""
    table = Table(title=f"{placement.algorithm}: twin verification", header_style="bold")
    for c in ("GPU", "offered\ntok/s", "thr.\ntok/s", "mean ITL\nms", "p99 ITL\nms",
              "mean TTFT\nms", "p99 TTFT\nms", "starved", "memory\nerror"):
        table.add_column(c, justify="right", no_wrap=True)
    for k, g in enumerate(placement.servers):
        v = g.verified or {}
        starved, mem = v.get("starvation"), v.get("memory_error")
        table.add_row(
            str(k), _fmt(v.get("offered_throughput_tok_s"), 0),
            _fmt(v.get("total_throughput_tok_s"), 0), _fmt(v.get("mean_itl_ms")),
            _fmt(v.get("p99_itl_ms")), _fmt(v.get("mean_ttft_ms")), _fmt(v.get("p99_ttft_ms")),
            "[red]yes[/red]" if starved else _fmt(starved),
            ("[red]" + str(v.get("memory_error_reason") or "yes") + "[/red]") if mem
            else _fmt(mem),
        )
    return table


def placement_dict(placement: Placement, rates: dict[str, float] | None = None,
                   lower_bound: int | None = None) -> dict[str, Any]:
    """The ``--json`` document of ``loratwin place``: :meth:`Placement.to_dict` plus, per GPU,
    ``rates_req_s`` (the rate served there, req/s) and ``traffic_share`` (fraction of each
    adapter's traffic, < 1 for split adapters), and the lower bound when known."""
    doc = placement.to_dict()
    for s, g in zip(doc["servers"], placement.servers, strict=True):
        s["rates_req_s"] = [a.rate for a in g.adapters]
        s["traffic_share"] = [share for _, share in adapter_shares(rates or {}, g)]
    if lower_bound is not None:
        doc["lower_bound"] = lower_bound
    return doc


# ----------------------------------------------------------------------------- vllm serve


def vllm_rank(rank: int) -> int:
    """Smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``."""
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= rank), rank)


def vllm_command(gpu: GpuAssignment, hf_model: str, lora_dir: str = "./adapters",
                 max_num_batched_tokens: int | None = None) -> list[str]:
    """The ``vllm serve`` argument list of one GPU (adapter paths ``<lora_dir>/<id>``).

    Flags: ``--enable-lora --max-loras --max-cpu-loras --max-lora-rank --max-num-seqs
    --max-num-batched-tokens`` (the twin's token budget, ``max(2048, max_num_seqs)``, unless
    given) and ``--lora-modules id=path ...``. A rank vLLM does not accept is rounded up to
    the next accepted one (:data:`VLLM_MAX_LORA_RANKS`).
    """
    budget = max_num_batched_tokens or max(2048, gpu.max_num_seqs)
    base = lora_dir.rstrip("/") or "/"
    modules = [f"{a.id}={base}/{a.id}" for a in gpu.adapters]
    return [
        "vllm", "serve", hf_model, "--enable-lora",
        "--max-loras", str(gpu.max_loras),
        "--max-cpu-loras", str(gpu.max_cpu_loras),
        "--max-lora-rank", str(vllm_rank(gpu.max_lora_rank)),
        "--max-num-seqs", str(gpu.max_num_seqs),
        "--max-num-batched-tokens", str(budget),
        "--lora-modules", *modules,
    ]


def vllm_script(gpu: GpuAssignment, index: int, placement: Placement, hf_model: str,
                lora_dir: str = "./adapters", rates: dict[str, float] | None = None) -> str:
    """A bash script starting the server of GPU ``index`` (port ``$PORT``, default 8000)."""
    argv = vllm_command(gpu, hf_model, lora_dir)
    head = argv[: argv.index("--lora-modules")]
    mods = argv[len(head) + 1:]
    p = gpu.predicted
    lines = [
        "#!/usr/bin/env bash",
        f"# loratwin placement ({placement.algorithm}): GPU {index} of {placement.gpus}, "
        f"{len(gpu.adapters)} adapter(s), {gpu.total_rate:.4g} req/s",
        f"# predicted: {p.get('total_throughput_tok_s', math.nan):,.0f} tok/s, ITL "
        f"{p.get('mean_itl_ms', math.nan):.1f} ms, TTFT {p.get('mean_ttft_ms', math.nan):.1f} ms, "
        f"p(starve) {p.get('starvation_probability', math.nan):.3f}",
    ]
    if vllm_rank(gpu.max_lora_rank) != gpu.max_lora_rank:
        lines.append(f"# max_lora_rank {gpu.max_lora_rank} rounded up to "
                     f"{vllm_rank(gpu.max_lora_rank)} (values vLLM accepts); the prediction "
                     f"assumed {gpu.max_lora_rank}")
    split = [(i, s) for i, s in adapter_shares(rates or {}, gpu) if s < 1 - 1e-9]
    if split:
        lines.append("# split adapters (route this share of their requests here): "
                     + ", ".join(f"{i} {s:.1%}" for i, s in split))
    lines += ["set -euo pipefail", "exec " + " ".join(shlex.quote(x) for x in head)
              + ' --port "${PORT:-8000}" --lora-modules \\']
    lines += [f"    {shlex.quote(m)}" + (" \\" if k < len(mods) - 1 else "")
              for k, m in enumerate(mods)]
    return "\n".join(lines) + "\n"


def write_vllm_scripts(placement: Placement, profile: Profile, out_dir: Path,
                       lora_dir: str = "./adapters", rates: dict[str, float] | None = None
                       ) -> list[Path]:
    """Write ``gpu-00.sh``, ``gpu-01.sh``, ... (executable) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(placement.gpus - 1)))
    paths = []
    for k, g in enumerate(placement.servers):
        path = out_dir / f"gpu-{k:0{width}d}.sh"
        path.write_text(vllm_script(g, k, placement, profile.hf_model_name, lora_dir, rates))
        path.chmod(0o755)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class CompareRow:
    """One algorithm in ``loratwin compare`` (units in the names; see the module docstring).

    ``starved_gpus`` / ``memory_errors`` count GPUs the twin saw starving / failing to start
    (``predicted_starving_gpus``: the surrogate's p >= 0.5); ``verified`` tells whether the
    metrics come from the twin. ``worst_gpu_mean_ttft_ms`` is the highest per-GPU mean TTFT
    and ``p99_ttft_ms`` the highest per-GPU p99 TTFT, an upper bound on the p99 over all the
    placement's requests (at most 1% of each GPU's requests, so of all requests, wait longer).
    """

    algorithm: str
    gpus: int
    starved_gpus: int
    memory_errors: int
    total_throughput_tok_s: float
    mean_itl_ms: float
    mean_ttft_ms: float
    placement_s: float
    predicted_starving_gpus: int
    verified: bool
    worst_gpu_mean_ttft_ms: float = math.nan
    p99_ttft_ms: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weighted(values: Sequence[float], weights: Sequence[float]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True)
             if v is not None and math.isfinite(v) and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else math.nan


def summarize(placement: Placement) -> CompareRow:
    """Aggregate a (verified) placement into one comparison row."""
    servers = placement.servers
    verified = bool(servers) and all(g.verified for g in servers)
    src = [g.verified if verified else g.predicted for g in servers]
    thr = [float(s.get("total_throughput_tok_s") or 0.0) if s else 0.0 for s in src]
    thr = [t if math.isfinite(t) else 0.0 for t in thr]
    return CompareRow(
        algorithm=placement.algorithm,
        gpus=placement.gpus,
        starved_gpus=sum(bool(g.verified and g.verified.get("starvation")) for g in servers),
        memory_errors=sum(bool(g.verified and g.verified.get("memory_error")) for g in servers),
        total_throughput_tok_s=float(sum(thr)),
        mean_itl_ms=_weighted([s.get("mean_itl_ms", math.nan) for s in src], thr),
        mean_ttft_ms=_weighted([s.get("mean_ttft_ms", math.nan) for s in src], thr),
        placement_s=placement.placement_s,
        predicted_starving_gpus=sum(g.predicted.get("starvation_probability", 0.0) >= 0.5
                                    for g in servers),
        verified=verified,
        worst_gpu_mean_ttft_ms=_worst([s.get("mean_ttft_ms", math.nan) for s in src]),
        p99_ttft_ms=_worst([s.get("p99_ttft_ms", math.nan) for s in src]),
    )


def _worst(values: Sequence[float | None]) -> float:
    """Largest finite value (NaN when there is none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return max(vals) if vals else math.nan


def compare_dict(rows: Sequence[CompareRow], lower_bound: int,
                 optimum: int | None, optimum_note: str | None = None) -> dict[str, Any]:
    """The ``--json`` document of ``loratwin compare``."""
    doc: dict[str, Any] = {
        "lower_bound": lower_bound,
        "optimum": optimum,
        "results": [r.to_dict() for r in rows],
    }
    if optimum_note:
        doc["optimum_note"] = optimum_note
    return doc


def compare_table(rows: Sequence[CompareRow], lower_bound: int, optimum: int | None) -> Table:
    """The comparison as a Rich table."""
    opt = "-" if optimum is None else str(optimum)
    table = Table(title=f"Placement comparison (lower bound {lower_bound}, optimum {opt})",
                  header_style="bold")
    for c in ("algorithm", "GPUs", "starved\n(twin)", "memory\nerrors", "p>=0.5\n(surrogate)",
              "throughput\n(tok/s)", "mean ITL\n(ms)", "mean TTFT\n(ms)",
              "worst GPU\nTTFT (ms)", "p99 TTFT\n(ms)", "placement\n(s)"):
        table.add_column(c, justify="left" if c == "algorithm" else "right")
    for r in rows:
        table.add_row(
            r.algorithm, str(r.gpus),
            f"[red]{r.starved_gpus}[/red]" if r.starved_gpus else "0",
            f"[red]{r.memory_errors}[/red]" if r.memory_errors else "0",
            str(r.predicted_starving_gpus), _fmt(r.total_throughput_tok_s, 0),
            _fmt(r.mean_itl_ms), _fmt(r.mean_ttft_ms), _fmt(r.worst_gpu_mean_ttft_ms, 0),
            _fmt(r.p99_ttft_ms, 0), f"{r.placement_s:.3f}",
        )
    return table


def plot_compare(rows: Sequence[CompareRow], lower_bound: int, optimum: int | None,
                 path: Path, title: str = "GPUs per placement algorithm") -> Path:
    """Bar chart: GPUs per algorithm (starved GPUs in red), lower bound and optimum lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.algorithm for r in rows]
    ok = [r.gpus - r.starved_gpus for r in rows]
    bad = [r.starved_gpus for r in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 3, 4))
    ax.bar(names, ok, color="#4C72B0", label="GPUs (healthy in the twin)")
    ax.bar(names, bad, bottom=ok, color="#C44E52", label="starved GPUs (twin)")
    ax.axhline(lower_bound, color="black", linestyle="--", label=f"lower bound ({lower_bound})")
    if optimum is not None:
        ax.axhline(optimum, color="#55A868", linestyle=":", label=f"optimum ({optimum})")
    ax.set_ylabel("GPUs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
