"""Readable rules from the surrogate's small interpretable trees (``loratwin train --explain``).

Each target has one decision tree of at most 40 leaves, fitted on the same (transformed)
target as the main model. Every leaf becomes one rule: the conditions on the path from the
root, merged per feature into a range, and the leaf's prediction in the target's unit
(``log`` targets show ``expm1`` of the leaf mean, a geometric-type mean; ``fraction``
targets show the share of the offered load). Thresholds are shown to 4 significant digits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from loratwin.surrogate.derived import MODEL_INPUTS
from loratwin.surrogate.trees import TreeEnsemble

if TYPE_CHECKING:
    from loratwin.surrogate.model import Surrogate

_UNITS = {"total_throughput_tok_s": "tok/s", "mean_itl_ms": "ms", "mean_ttft_ms": "ms"}


def _num(v: float) -> str:
    return f"{v:.4g}"


def tree_rules(ens: TreeEnsemble, tree: int = 0) -> list[tuple[list[str], int]]:
    """Rules of one tree: per leaf (left to right) the merged conditions and the leaf node.

    Returns
    -------
    list of (conditions, leaf node index inside the ensemble)
    """
    lo_node, hi_node = int(ens.offsets[tree]), int(ens.offsets[tree + 1])
    feat = ens.feature[lo_node:hi_node]
    thr = ens.threshold[lo_node:hi_node]
    left = ens.left[lo_node:hi_node]
    right = ens.right[lo_node:hi_node]
    out: list[tuple[list[str], int]] = []
    # stack of (node, {feature: (lower bound exclusive, upper bound inclusive)})
    stack: list[tuple[int, dict[int, tuple[float, float]]]] = [(0, {})]
    while stack:
        node, bounds = stack.pop()
        if left[node] < 0:
            conds = []
            for f in sorted(bounds):
                lo, hi = bounds[f]
                name = MODEL_INPUTS[f]
                if lo > -math.inf and hi < math.inf:
                    conds.append(f"{_num(lo)} < {name} <= {_num(hi)}")
                elif lo > -math.inf:
                    conds.append(f"{name} > {_num(lo)}")
                else:
                    conds.append(f"{name} <= {_num(hi)}")
            out.append((conds, lo_node + node))
            continue
        f = int(feat[node])
        lo, hi = bounds.get(f, (-math.inf, math.inf))
        right_b = {**bounds, f: (max(lo, float(thr[node])), hi)}
        left_b = {**bounds, f: (lo, min(hi, float(thr[node])))}
        stack.append((int(right[node]), right_b))
        stack.append((int(left[node]), left_b))
    return out


def _leaf_text(target: str, transform: str, value: float) -> str:
    if target == "starvation":
        verdict = "starved" if value > 0.5 else "not starved"
        return f"{verdict} (p = {value:.2f})"
    unit = _UNITS.get(target, "")
    if transform == "fraction":
        return f"{value:.3f} x offered load"
    if transform == "log":
        return f"~{math.expm1(value):,.1f} {unit}"
    return f"{value:,.1f} {unit}"


def format_rules(surrogate: Surrogate) -> str:
    """All interpretable trees of a surrogate as text, one ``IF ... THEN ...`` line per leaf."""
    lines: list[str] = []
    for target, m in surrogate.explain.items():
        info = surrogate.meta.get("explain", {}).get(target, {})
        fid = info.get("holdout", {})
        score = ", ".join(f"{k} {v:.3g}" for k, v in fid.items())
        rules = tree_rules(m.ensemble)
        lines.append(f"{target} ({len(rules)} rules"
                     + (f"; hold-out {score}" if score else "") + "):")
        for conds, leaf in rules:
            cond = " and ".join(conds) if conds else "always"
            then = _leaf_text(target, m.transform, float(m.ensemble.value[leaf]))
            lines.append(f"  IF {cond} THEN {then}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
