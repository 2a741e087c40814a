"""The surrogate against real serving runs (schema of ``real_runs/<model>.csv``).

Each real run (a 3600 s ``benchmark_serving`` run of Agullo et al., arXiv 2508.08343) is
turned into the surrogate's features exactly as the twin validation rebuilds its workload
(:func:`loratwin.twin.validate.run_inputs`: ranks cycled from ``rank_set``, rates dealt from
``rates``; the mean lengths are the run's prompt-pool means), and the predictions are scored
against the measurements with the papers' SMAPE (throughput, ITL, TTFT) and the starvation
accuracy / F1 against the run's ``starvation_est`` label. Runs that failed to start
(``status`` not ``ok``) are not the surrogate's business (memory errors come from the
profile's KV model) and are skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.surrogate.features import gpu_features
from loratwin.surrogate.model import Surrogate
from loratwin.twin.validate import check_columns, real_starvation, run_inputs, smape


def predict_real_runs(surrogate: Surrogate, df: pd.DataFrame, profile: Profile,
                      seed: int = 0) -> pd.DataFrame:
    """One row per ``ok`` real run: measured and predicted throughput (tok/s), ITL and TTFT
    (ms), p99 TTFT (ms), starvation (real label and predicted), and whether the row lies outside the
    surrogate's training envelope.

    Raises
    ------
    DataError
        Missing columns, malformed rank sets or rate lists, or no ``ok`` run.
    """
    check_columns(df, "real runs")
    rows = [(i, r) for i, r in df.reset_index(drop=True).iterrows() if str(r["status"]) == "ok"]
    if not rows:
        raise DataError("real runs: no run with status 'ok'")
    feats, meta = [], []
    for i, r in rows:
        inp = run_inputs(r, i, profile, seed)
        feats.append(gpu_features(inp.adapters, inp.server.max_loras,
                                  default_input_tokens=inp.mean_input_tokens,
                                  default_output_tokens=inp.mean_output_tokens))
        meta.append({
            "row": i, "served_adapters": int(r["served_adapters"]),
            "max_loras": int(r["max_loras"]), "max_lora_rank": int(r["max_lora_rank"]),
            "sum_rate_req_s": float(r["sum_rate_req_s"]) if "sum_rate_req_s" in r else math.nan,
            "real_total_throughput_tok_s": float(r["total_throughput"]),
            "real_mean_itl_ms": float(r["mean_itl_ms"]),
            "real_mean_ttft_ms": float(r["mean_ttft_ms"]),
            "real_p99_ttft_ms": float(r["p99_ttft_ms"]) if "p99_ttft_ms" in r else math.nan,
            "real_starvation": real_starvation(r),
        })
    p = surrogate.predict(np.array(feats))
    out = pd.DataFrame(meta)
    out["pred_total_throughput_tok_s"] = p.total_throughput_tok_s
    out["pred_mean_itl_ms"] = p.mean_itl_ms
    out["pred_mean_ttft_ms"] = p.mean_ttft_ms
    out["pred_p99_ttft_ms"] = p.p99_ttft_ms
    out["pred_starvation"] = np.asarray(p.starvation, bool)
    out["pred_starvation_probability"] = p.starvation_probability
    out["out_of_envelope"] = np.asarray(p.out_of_envelope, bool)
    return out


def score_real_runs(pred: pd.DataFrame) -> dict[str, Any]:
    """Scores of :func:`predict_real_runs`: SMAPE (%) per metric, starvation accuracy, F1,
    precision and recall (starving = positive), run counts."""
    lab = pred[pred["real_starvation"].notna()]
    y = lab["real_starvation"].astype(bool).to_numpy()
    f = lab["pred_starvation"].astype(bool).to_numpy()
    tp, fp, fn = int((y & f).sum()), int((~y & f).sum()), int((y & ~f).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return {
        "runs": len(pred),
        "out_of_envelope": int(pred["out_of_envelope"].sum()),
        "throughput_smape_pct": smape(pred["pred_total_throughput_tok_s"],
                                      pred["real_total_throughput_tok_s"]),
        "itl_smape_pct": smape(pred["pred_mean_itl_ms"], pred["real_mean_itl_ms"]),
        "ttft_smape_pct": smape(pred["pred_mean_ttft_ms"], pred["real_mean_ttft_ms"]),
        "p99_ttft_smape_pct": smape(pred["pred_p99_ttft_ms"], pred["real_p99_ttft_ms"]),
        "starvation_runs": len(lab),
        "starving_runs": int(y.sum()),
        "starvation_accuracy": float((y == f).mean()) if len(lab) else float("nan"),
        "starvation_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "starvation_precision": precision,
        "starvation_recall": recall,
    }
