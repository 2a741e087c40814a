"""What the HTML report shows, read from plan documents (pure functions, no rendering).

A plan document is the ``--json`` output of ``loratwin place`` (see
:func:`loratwin.placement.report.placement_dict` and
:func:`loratwin.deploy.fleet.plan_context`); every key the report reads is checked here so
that a malformed file gives one :class:`~loratwin.errors.DataError` line, not a traceback.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from loratwin.errors import DataError

#: Shown when a plan does not state its objective (``loratwin place``'s own).
DEFAULT_OBJECTIVE = "fewest GPUs, every GPU keeping up (throughput >= 0.9 x offered)"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _mapping(v: Any, where: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise DataError(f"{where} must be an object")
    return v


def _timeseries(v: Any, where: str) -> dict[str, list[float]] | None:
    if v is None:
        return None
    ts = _mapping(v, where)
    keys = ("t_s", "running", "waiting", "kv_used_fraction")
    cols = [ts.get(k) for k in keys]
    if not all(isinstance(c, list) for c in cols) or len({len(c) for c in cols}) != 1:
        raise DataError(f"{where} needs lists {', '.join(keys)} of one length")
    return {k: [_num(x) for x in c] for k, c in zip(keys, cols, strict=True)}


def gpu_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dict per GPU server: flags, load, predictions and (if verified) the twin's metrics.

    Keys: ``gpu, adapters, rank_counts`` ({rank: count}), ``split`` (adapters with a share
    < 1), ``rate`` (req/s), ``max_loras, max_cpu_loras, max_lora_rank, max_num_seqs``,
    ``offered`` (tok/s), ``predicted_thr`` (tok/s), ``predicted_itl, predicted_ttft`` (ms),
    ``p_starve, headroom``, ``verified`` (bool), ``verified_thr, verified_itl,
    verified_p99_itl, verified_ttft, verified_p99_ttft`` (tok/s, ms), ``starved,
    memory_error`` and ``timeseries`` (or ``None``).

    Raises
    ------
    DataError
        The document has no servers list or a server is malformed.
    """
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers:
        raise DataError("the plan has no servers list (is it `loratwin place --json` output?)")
    rows = []
    for k, s in enumerate(servers):
        where = f"servers[{k}]"
        s = _mapping(s, where)
        ids, ranks = s.get("adapters"), s.get("ranks")
        if not isinstance(ids, list) or not isinstance(ranks, list) or len(ids) != len(ranks):
            raise DataError(f"{where}: adapters and ranks must be lists of one length")
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
            raise DataError(f"{where}: ranks must be integers")
        p = _mapping(s.get("predicted"), f"{where}.predicted")
        v = _mapping(s.get("verified"), f"{where}.verified")
        shares = s.get("traffic_share") or []
        rows.append({
            "gpu": k, "adapters": len(ids), "rank_counts": dict(sorted(Counter(ranks).items())),
            "split": sum(1 for x in shares if isinstance(x, int | float) and x < 1 - 1e-9),
            "rate": _num(s.get("total_rate_req_s")),
            "max_loras": s.get("max_loras"), "max_cpu_loras": s.get("max_cpu_loras"),
            "max_lora_rank": s.get("max_lora_rank"), "max_num_seqs": s.get("max_num_seqs"),
            "offered": _num(p.get("offered_throughput_tok_s",
                                  v.get("offered_throughput_tok_s"))),
            "predicted_thr": _num(p.get("total_throughput_tok_s")),
            "predicted_itl": _num(p.get("mean_itl_ms")),
            "predicted_ttft": _num(p.get("mean_ttft_ms")),
            "p_starve": _num(p.get("starvation_probability")),
            "headroom": _num(p.get("headroom")),
            "verified": bool(v),
            "verified_thr": _num(v.get("total_throughput_tok_s")),
            "verified_itl": _num(v.get("mean_itl_ms")),
            "verified_p99_itl": _num(v.get("p99_itl_ms")),
            "verified_ttft": _num(v.get("mean_ttft_ms")),
            "verified_p99_ttft": _num(v.get("p99_ttft_ms")),
            "starved": v.get("starvation") if v else None,
            "memory_error": (v.get("memory_error_reason") or True) if v.get("memory_error")
            else (False if v else None),
            "timeseries": _timeseries(v.get("timeseries"), f"{where}.verified.timeseries"),
        })
    return rows


def summary(doc: Mapping[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline facts: GPUs, lower bound, algorithm, objective, profile and its kind
    (``estimated`` for a prior profile), SLOs, verification state, workload totals."""
    prof = _mapping(doc.get("profile"), "profile")
    slo = _mapping(doc.get("slo"), "slo")
    kind = str(prof.get("profile_kind") or "unknown")
    verified = [r for r in rows if r["verified"]]
    window = next((s.get("verified", {}).get("duration_s") for s in doc["servers"]
                   if isinstance(s, Mapping) and isinstance(s.get("verified"), Mapping)), None)
    return {
        "gpus": len(rows),
        "lower_bound": doc.get("lower_bound"),
        "algorithm": str(doc.get("algorithm") or "?"),
        "objective": str(doc.get("objective") or DEFAULT_OBJECTIVE),
        "profile": str(prof.get("name") or "?"),
        "hf_model": str(prof.get("hf_model_name") or "?"),
        "profile_kind": kind,
        "estimated": kind == "prior",
        "vllm_version": prof.get("vllm_version"),
        "workload": doc.get("workload"),
        "slo_ttft_ms": _positive(slo.get("max_ttft_ms")),
        "slo_itl_ms": _positive(slo.get("max_itl_ms")),
        "placement_s": _num(doc.get("placement_s")),
        "adapters": sum(r["adapters"] for r in rows),
        "rate": sum(r["rate"] for r in rows if math.isfinite(r["rate"])),
        "offered": sum(r["offered"] for r in rows if math.isfinite(r["offered"])),
        "verified_gpus": len(verified),
        "window_s": window,
        "starved_gpus": sum(bool(r["starved"]) for r in verified),
        "memory_errors": sum(bool(r["memory_error"]) for r in verified),
        "notes": [str(n) for n in doc.get("notes") or []],
    }


def _positive(v: Any) -> float | None:
    x = _num(v)
    return x if math.isfinite(x) and x > 0 else None
