"""How close a profile comes to measurements: the checks behind ``benchmarks/prior_accuracy.py``.

* :func:`kv_errors`: KV cache size at every measured (``max_loras``, ``max_lora_rank``) point
  of a measured profile (relative error) and the start-up failures reproduced;
* :func:`load_errors`: CPU -> GPU and disk -> CPU load times at the measured points;
* :func:`replay_errors`: every engine-bound calibration run replayed in the twin (run
  duration = step latency summed over the run's steps, and mean ITL), as SMAPE;
* :func:`bca_twin_sweep`: a "Mind the Memory Gap" batch sweep (``../shared/data/bca/``)
  re-run by the twin through ``loratwin advise --twin``'s configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from loratwin.calibrate.calibration import load_calibration_runs
from loratwin.calibrate.fit import MIN_ENGINE_BOUND_DURATION_S, replay, sharegpt_length_cv
from loratwin.profile.model import Profile, cpu_load_s, disk_load_s, kv_capacity
from loratwin.twin.release import release_rules


def smape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Symmetric mean absolute percentage error, %: mean of 2|f - a| / (|f| + |a|)."""
    f = np.asarray(forecast, float)
    a = np.asarray(actual, float)
    ok = np.isfinite(f) & np.isfinite(a) & ((np.abs(f) + np.abs(a)) > 0)
    return float(100 * np.mean(2 * np.abs(f[ok] - a[ok]) / (np.abs(f[ok]) + np.abs(a[ok]))))


@dataclass(frozen=True)
class KVCheck:
    """KV capacity of a profile at the measured points of another.

    ``rows``: (max_loras, max_lora_rank, measured tokens or None, predicted tokens,
    measured failure, predicted failure, relative error or NaN).
    """

    rows: tuple[tuple[int, int, int | None, int, str | None, str | None, float], ...]

    @property
    def max_abs_rel_err(self) -> float:
        """Largest |relative error| over the points where both start, fraction."""
        errs = [abs(r[6]) for r in self.rows if math.isfinite(r[6])]
        return max(errs) if errs else float("nan")

    @property
    def startup_agreement(self) -> tuple[int, int]:
        """(points where start/fail and the failure kind agree, points)."""
        same = sum(1 for r in self.rows if r[4] == r[5])
        return same, len(self.rows)


def kv_errors(profile: Profile, measured: Profile) -> KVCheck:
    """``profile``'s KV capacity at every point of ``measured.kv.points``."""
    rows = []
    for p in measured.kv.points:
        k = kv_capacity(profile, p.max_loras, p.max_lora_rank)
        err = (k.tokens - p.kv_cache_tokens) / p.kv_cache_tokens \
            if p.kv_cache_tokens and k.failure is None else float("nan")
        rows.append((p.max_loras, p.max_lora_rank, p.kv_cache_tokens, k.tokens, p.failure,
                     k.failure, err))
    return KVCheck(tuple(rows))


def load_errors(profile: Profile, measured: Profile) -> pd.DataFrame:
    """Load times of ``profile`` at ``measured``'s points: ms and relative errors."""
    out = []
    for p in measured.loads.points:
        cpu = 1e3 * cpu_load_s(profile, p.max_lora_rank, p.adapter_rank)
        disk = 1e3 * disk_load_s(profile, p.adapter_rank)
        out.append({"max_lora_rank": p.max_lora_rank, "adapter_rank": p.adapter_rank,
                    "cpu_ms": cpu, "measured_cpu_ms": p.cpu_ms,
                    "cpu_rel_err": cpu / p.cpu_ms - 1, "disk_ms": disk,
                    "measured_disk_ms": p.disk_ms, "disk_rel_err": disk / p.disk_ms - 1})
    return pd.DataFrame(out)


def replay_errors(profile: Profile, calibration_dir: Path) -> pd.DataFrame:
    """Replay every engine-bound run of a calibration folder with ``profile``.

    Returns one row per run: kind, measured and twin duration (s) and mean ITL (ms).
    """
    rows = []
    for run in load_calibration_runs(Path(calibration_dir)):
        if run.duration_s < MIN_ENGINE_BOUND_DURATION_S:
            continue
        _, raw = replay(profile, run)
        fin, first = raw.finish_s, raw.first_token_s  # type: ignore[attr-defined]
        req = run.requests
        multi = np.isfinite(fin) & (req.output_tokens > 1)
        gaps = (req.output_tokens[multi] - 1).sum()
        itl = float((fin - first)[multi].sum() / gaps * 1e3) if gaps else float("nan")
        rows.append({"run": run.name, "kind": run.kind, "duration_s": run.duration_s,
                     "twin_duration_s": float(np.nanmax(fin)), "mean_itl_ms": run.mean_itl_ms,
                     "twin_mean_itl_ms": itl})
    return pd.DataFrame(rows)


#: The vLLM release of the BCA sweeps: a fork of main of 2024-10-18, V0 engine
#: (``../shared/data/bca/setup.json`` ``software.vllm_note``: between v0.6.3.post1 and v0.6.4).
BCA_VLLM_VERSION = "0.6.3"


def bca_twin_config(profile_path: Path, sweep: pd.DataFrame, model: str, *,
                    fixed_length: bool, vllm_version: str = BCA_VLLM_VERSION) -> dict:
    """The ``advise --twin`` configuration that re-runs one model of a measured BCA sweep.

    ShareGPT sweep: no LoRA, ``max_model_len`` 2048, the measured mean prompt and output
    lengths with ShareGPT's spread (vLLM's sampler window); fixed-length sweep: the logged
    prompt length, each output length, ``max_num_batched_tokens`` 512 (chunked prefill).
    ``vllm_version`` is the release whose rules the twin applies (the sweeps' V0 engine);
    chunked prefill as the sweep logged it (``chunked_prefill_enabled``) where the release
    can turn it off.
    """
    rows = sweep[sweep["model"] == model]
    n = int(rows["num_prompts"].iloc[0])
    mean_in = float(rows["total_input_tokens"].iloc[0]) / n
    server: dict = {"enable_lora": False, "max_model_len": int(rows["max_seq_len"].iloc[0]),
                    "vllm_version": vllm_version}
    if release_rules(vllm_version).scheduler.chunked_prefill_optional:
        server["enable_chunked_prefill"] = bool(rows["chunked_prefill_enabled"].iloc[0])
    cfg: dict = {"model": str(profile_path), "server": server, "adapters": 1,
                 "max_num_seqs": sorted(int(b) for b in rows["max_num_seqs"].unique()),
                 "num_prompts": n, "seed": 0}
    if fixed_length:
        server["max_num_batched_tokens"] = int(rows["chunked_max_num_batched_tokens"].iloc[0])
        cfg["lengths"] = {"kind": "fixed", "input_tokens": round(mean_in),
                          "output_tokens": int(rows["output_len"].iloc[0])}
        cfg["output_lens"] = sorted(int(x) for x in rows["output_len"].unique())
    else:
        mean_out = float(rows["total_output_tokens"].mean()) / n
        cv_in, cv_out = sharegpt_length_cv()
        cfg["lengths"] = {"kind": "heavy-tailed", "mean_input": mean_in, "mean_output": mean_out,
                          "std_input": cv_in * mean_in, "std_output": cv_out * mean_out}
    return cfg


def bca_twin_sweep(profile_path: Path, sweep: pd.DataFrame, model: str, work_dir: Path, *,
                   fixed_length: bool, vllm_version: str = BCA_VLLM_VERSION) -> pd.DataFrame:
    """Run :func:`bca_twin_config` through the twin (``advise --twin``'s code path)."""
    from loratwin.advisor.twin_sweep import sweep_from_twin_config

    cfg = bca_twin_config(profile_path, sweep, model, fixed_length=fixed_length,
                          vllm_version=vllm_version)
    path = Path(work_dir) / f"{model}-{'fixed' if fixed_length else 'sharegpt'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = sweep_from_twin_config(path)
    out["model"] = model
    return out


__all__ = [
    "BCA_VLLM_VERSION",
    "KVCheck",
    "bca_twin_config",
    "bca_twin_sweep",
    "kv_errors",
    "load_errors",
    "replay_errors",
    "smape",
]
