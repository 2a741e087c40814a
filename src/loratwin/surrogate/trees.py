"""Tree ensembles as plain arrays, and fast evaluators that reproduce scikit-learn exactly.

A fitted scikit-learn tree model (decision tree, random forest, extra trees, gradient
boosting; regression or binary classification) is converted by :func:`from_sklearn` into a
:class:`TreeEnsemble`: per node ``feature, threshold, left, right, value`` (trees
concatenated, ``offsets`` mark where each starts) plus how to combine the trees (``kind``
``mean`` for forests, ``sum`` for boosting with its ``init`` and learning-rate ``scale``) and
the output ``link``. These arrays are all a saved surrogate holds (no pickles).

:func:`compile_ensemble` prepares two evaluators that give bit-identical results to
scikit-learn's ``predict`` / ``predict_proba`` / ``decision_function``:

- **batches** (numpy): for ensembles whose trees have at most 64 leaves, the QuickScorer
  scheme (Lucchese et al., SIGIR 2015): every node that sends a row right removes the leaves
  of its left subtree from a 16-, 32- or 64-bit leaf mask (the smallest word that holds the
  largest tree); the row's leaf is the leftmost leaf left. Per feature the node thresholds
  are sorted and the running AND of their masks tabulated, so a row costs one
  ``searchsorted`` per feature, one table lookup per (feature, tree), the AND of those and
  a lowest-set-bit: no per-level loop. Bigger trees fall back to a
  level-synchronous walk of all trees at once (leaves loop on themselves).
- **groups** (:class:`EnsembleGroup`): the targets of one surrogate share their inputs, so
  the threshold search, a third of the bitmask evaluator's time, is done once per feature
  in the union of the members' thresholds (each member's rank then by table lookup), for
  all rows of a call at once; any subset of members can be scored.
- **single rows** (plain Python, since numpy's per-call overhead of ~1 us per call exceeds
  the work of one row): the trees are turned into one Python function, one nested
  conditional expression per tree (``t += (a if x3 <= 0.5 else b)``), compiled once when the
  surrogate is loaded; about 4x faster than walking node lists. The source is generated
  from the validated numeric arrays only (feature indices and ``repr`` of finite floats),
  never read from a file. Trees deeper than :data:`MAX_CODEGEN_DEPTH` are walked instead.

Exactness: scikit-learn casts X to float32 and tests ``x32 <= threshold`` (float64); both
evaluators do the same. Forest outputs are summed in tree order then divided by the number
of trees (``ForestRegressor.predict``); boosting starts from ``init`` and adds
``scale * value`` tree by tree (``predict_stages``); ``numpy.cumsum`` is a sequential sum,
so the rounding is the same. Class probabilities of forest trees are the normalised leaf
counts (``DecisionTreeClassifier.predict_proba``), boosting probabilities ``expit(raw)``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit

from loratwin.errors import DataError

#: Keys of the per-node arrays in a saved ensemble.
NODE_ARRAYS: tuple[str, ...] = ("feature", "threshold", "left", "right", "value")
_BLOCK = 256  # rows per block of the batch evaluators (keeps temporaries in cache)
#: Deepest tree turned into Python source for the single-row path (deeper ones are walked).
MAX_CODEGEN_DEPTH = 24



@dataclass(frozen=True)
class _Width:
    """Leaf-mask word of the bitmask evaluator: the smallest that holds the largest tree.

    The index of the lowest set bit of a word ``m`` is read as a slot: for 32 and 64 bits
    ``((m & -m) * B mod 2^bits) >> (bits - log2(bits))`` with a de Bruijn constant ``B``
    (a distinct slot for each bit; Leiserson, Prokop and Randall 1998), for 16 bits a
    65,536-entry table. Leaf values are stored by slot.
    """

    bits: int
    dtype: type
    debruijn: int  # 0 for the table lookup

    @property
    def ones(self) -> int:
        return (1 << self.bits) - 1

    def slot_of_bit(self, k: int) -> int:
        if not self.debruijn:
            return k
        shift = self.bits - self.bits.bit_length() + 1
        return (((1 << k) * self.debruijn) & self.ones) >> shift


_WIDTHS = (_Width(16, np.uint16, 0), _Width(32, np.uint32, 0x077CB531),
           _Width(64, np.uint64, 0x03F79D71B4CB0A89))
_M16 = np.arange(1 << 16)
_LOWEST_BIT_16 = np.log2(np.maximum(_M16 & -_M16, 1)).astype(np.intp)  # exact: powers of 2


@dataclass(frozen=True)
class TreeEnsemble:
    """Trees as arrays (what a surrogate file stores).

    Attributes
    ----------
    kind:
        ``mean`` (forest: average of the trees) or ``sum`` (boosting: ``init`` +
        ``scale`` x sum of the trees).
    link:
        ``identity`` (regression) or ``logistic`` (binary classification: the output is
        the probability of class 1; for boosting ``expit`` of the raw sum).
    init, scale:
        Boosting's initial raw prediction and learning rate (0 and 1 for forests).
    offsets:
        (n_trees + 1,) int64: tree ``t`` is nodes ``offsets[t]:offsets[t+1]``.
    feature:
        (n_nodes,) int32 feature index of each split, -1 at leaves.
    threshold:
        (n_nodes,) float64: rows with ``float32(x[feature]) <= threshold`` go left.
    left, right:
        (n_nodes,) int32 children as indices inside the tree (-1 at leaves).
    value:
        (n_nodes,) float64 node output: regression value, probability of class 1 (forest
        classifiers) or raw leaf value (boosting, before ``scale``).
    """

    kind: Literal["mean", "sum"]
    link: Literal["identity", "logistic"]
    init: float
    scale: float
    offsets: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    @property
    def n_trees(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays under ``<prefix><name>`` keys, for ``numpy.savez``."""
        out = {f"{prefix}offsets": self.offsets}
        out.update({f"{prefix}{k}": getattr(self, k) for k in NODE_ARRAYS})
        return out

    def header(self) -> dict[str, Any]:
        """The scalars, for the JSON metadata."""
        return {"kind": self.kind, "link": self.link, "init": self.init, "scale": self.scale,
                "n_trees": self.n_trees, "n_nodes": self.n_nodes}

    @staticmethod
    def from_arrays(header: dict[str, Any], arrays: dict[str, np.ndarray],
                    prefix: str) -> TreeEnsemble:
        """Rebuild from :meth:`header` and :meth:`arrays`; validates shapes and indices.

        Raises
        ------
        DataError
            Missing arrays, wrong shapes or dtypes, or child indices out of range.
        """
        try:
            ens = TreeEnsemble(
                kind=header["kind"], link=header["link"], init=float(header["init"]),
                scale=float(header["scale"]),
                offsets=np.asarray(arrays[f"{prefix}offsets"], np.int64),
                feature=np.asarray(arrays[f"{prefix}feature"], np.int32),
                threshold=np.asarray(arrays[f"{prefix}threshold"], np.float64),
                left=np.asarray(arrays[f"{prefix}left"], np.int32),
                right=np.asarray(arrays[f"{prefix}right"], np.int32),
                value=np.asarray(arrays[f"{prefix}value"], np.float64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"surrogate file: ensemble {prefix.rstrip('_')!r} is incomplete "
                            f"({exc})") from None
        _validate(ens, prefix.rstrip("_"))
        return ens


def _validate(ens: TreeEnsemble, name: str) -> None:
    n = ens.n_nodes
    bad = ens.kind not in ("mean", "sum") or ens.link not in ("identity", "logistic")
    bad |= any(getattr(ens, k).shape != (n,) for k in NODE_ARRAYS)
    off = ens.offsets
    bad |= off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != n
    bad |= bool(len(off) >= 2 and (np.diff(off) <= 0).any())
    if not bad:
        size = np.repeat(np.diff(off), np.diff(off))
        leaf = ens.left < 0
        bad |= bool(((ens.right < 0) != leaf).any())
        kids = np.concatenate([ens.left[~leaf], ens.right[~leaf]])
        own = np.concatenate([np.arange(n) - np.repeat(off[:-1], np.diff(off))] * 2)
        own = np.concatenate([own[:n][~leaf], own[:n][~leaf]])
        # children inside the tree and after their parent (as scikit-learn numbers them):
        # this rules out cycles, so every walk ends
        bad |= bool(((kids <= own) | (kids >= np.concatenate([size[~leaf], size[~leaf]]))).any())
        bad |= bool((ens.feature[~leaf] < 0).any() or not np.isfinite(ens.value[leaf]).all())
        bad |= bool(not np.isfinite(ens.threshold[~leaf]).all())
        bad |= not (math.isfinite(ens.init) and math.isfinite(ens.scale))
    if bad:
        raise DataError(f"surrogate file: ensemble {name!r} has inconsistent arrays")


# ----------------------------------------------------------------------------- conversion


def _tree_arrays(tree: Any, proba: bool) -> tuple[np.ndarray, ...]:
    t = tree.tree_
    value = t.value[:, 0, :]
    if proba:
        # DecisionTreeClassifier.predict_proba: leaf counts (or fractions) / their sum
        norm = value.sum(axis=1)
        norm[norm == 0.0] = 1.0
        frac = value / norm[:, None]
        v = frac[:, 1] if frac.shape[1] > 1 else np.zeros(len(frac))
    else:
        v = value[:, 0]
    return (t.feature.astype(np.int32), t.threshold.astype(np.float64),
            t.children_left.astype(np.int32), t.children_right.astype(np.int32),
            np.ascontiguousarray(v, dtype=np.float64))


def _concat(trees: list[Any], proba: bool) -> dict[str, np.ndarray]:
    parts = [_tree_arrays(t, proba) for t in trees]
    sizes = [len(p[0]) for p in parts]
    out = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(NODE_ARRAYS)}
    out["offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out["feature"] = np.where(out["left"] < 0, -1, out["feature"]).astype(np.int32)
    return out


def from_sklearn(model: Any) -> TreeEnsemble:
    """Convert a fitted scikit-learn tree model.

    Supported: ``DecisionTreeRegressor``/``Classifier``, ``RandomForest*``,
    ``ExtraTrees*`` and ``GradientBoostingRegressor``/``Classifier`` (binary, with the
    default or ``zero`` init). Classifiers must have classes ``[False, True]`` or
    ``[0, 1]`` (or a single class).

    Raises
    ------
    TypeError
        An unsupported model.
    """
    from sklearn.base import is_classifier
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    clf = is_classifier(model)
    if clf and len(model.classes_) > 2:
        raise TypeError("only binary classifiers are supported")
    if isinstance(model, GradientBoostingRegressor | GradientBoostingClassifier):
        trees = [row[0] for row in model.estimators_[: model.n_estimators_]]
        init = float(model._raw_predict_init(np.zeros((1, model.n_features_in_)))[0, 0])
        a = _concat(trees, proba=False)
        return TreeEnsemble(kind="sum", link="logistic" if clf else "identity", init=init,
                            scale=float(model.learning_rate), **a)
    if isinstance(model, RandomForestRegressor | RandomForestClassifier | ExtraTreesRegressor
                  | ExtraTreesClassifier):
        trees = list(model.estimators_)
    elif isinstance(model, DecisionTreeRegressor | DecisionTreeClassifier):
        trees = [model]
    else:
        raise TypeError(f"unsupported model {type(model).__name__}")
    a = _concat(trees, proba=clf)
    if clf and len(model.classes_) == 1:  # a single class seen: probability 0 or 1
        a["value"] = np.full_like(a["value"], 1.0 if bool(model.classes_[0]) else 0.0)
    return TreeEnsemble(kind="mean", link="logistic" if clf else "identity", init=0.0,
                        scale=1.0, **a)


# ----------------------------------------------------------------------------- evaluation


def _leaf_order(left: np.ndarray, right: np.ndarray) -> list[int]:
    """Leaves of one tree from left to right (local indices)."""
    out: list[int] = []
    stack = [0]
    while stack:
        i = stack.pop()
        if left[i] < 0:
            out.append(i)
        else:
            stack.append(int(right[i]))
            stack.append(int(left[i]))
    return out


@dataclass(frozen=True)
class CompiledEnsemble:
    """A :class:`TreeEnsemble` prepared for fast evaluation (built by :func:`compile_ensemble`).

    Use :meth:`predict` for batches and :meth:`predict_row` for one row; both return the
    model's output (regression value or probability of class 1) and match scikit-learn.
    """

    ensemble: TreeEnsemble
    n_features: int
    method: Literal["bitmask", "walk"]
    # bitmask tables, per feature that some node splits on
    split_features: tuple[int, ...]
    thresholds: tuple[np.ndarray, ...]  # sorted unique thresholds
    masks: tuple[np.ndarray, ...]  # (len(thresholds)+1, n_trees) words: running ANDs
    width: _Width  # leaf-mask word
    leaf_values: np.ndarray  # (n_trees * bits,) scaled leaf values by slot
    tree_base: np.ndarray  # (n_trees,) bits * tree index
    # walk arrays (global node indices; leaves loop on themselves)
    walk_feature: np.ndarray
    walk_threshold: np.ndarray
    walk_children: np.ndarray  # (2 * n_nodes,): [left, right] per node
    walk_value: np.ndarray  # scaled node values
    roots: np.ndarray
    depth: int
    # plain-Python copies for single rows
    py_feature: list[int]
    py_threshold: list[float]
    py_left: list[int]
    py_right: list[int]
    py_value: list[float]
    py_roots: list[int]
    row_fn: Callable[[array], float] | None  # generated single-row evaluator

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Combined tree output before the link, (n,) for x (n, n_features)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected an (n, {self.n_features}) array, got {x.shape}")
        out = np.empty(len(x))
        for s in range(0, len(x), _BLOCK):
            out[s:s + _BLOCK] = self._raw_block(x[s:s + _BLOCK])
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Model output for a batch: (n,) values, or probabilities of class 1."""
        return self.linked(self.raw(x))

    def _raw_block(self, x: np.ndarray) -> np.ndarray:
        x32 = x.astype(np.float32).astype(np.float64)
        if self.method == "walk":
            return self._walk_block(x32)
        pos = [np.searchsorted(thr, x32[:, f], side="left")
               for f, thr in zip(self.split_features, self.thresholds, strict=True)]
        return self._bitmask_block(pos, len(x))

    def _bitmask_block(self, pos: list[np.ndarray], n: int) -> np.ndarray:
        """Raw output of n rows given, per split feature, the number of its thresholds
        below each row's value (``pos[k]``: (n,) ints for ``split_features[k]``)."""
        w = self.width
        n_trees = self.ensemble.n_trees
        mask = np.empty((n, n_trees), w.dtype)
        tmp = np.empty((n, n_trees), w.dtype)
        for k, (b, tab) in enumerate(zip(pos, self.masks, strict=True)):
            # the method form: numpy's function wrapper costs ~1 us a call, many calls a row
            if k == 0:
                tab.take(b, 0, mask, "clip")
            else:
                tab.take(b, 0, tmp, "clip")
                np.bitwise_and(mask, tmp, out=mask)
        if not pos:
            mask.fill(w.ones)
        # slot of the lowest set bit (the leaf table is stored by slot)
        if w.debruijn:
            np.bitwise_and(mask, ~mask + w.dtype(1), out=mask)
            mask *= w.dtype(w.debruijn)
            mask >>= w.dtype(w.bits - w.bits.bit_length() + 1)
            idx = mask.T.astype(np.intp)
        else:
            idx = _LOWEST_BIT_16[mask.T]
        idx += self.tree_base[:, None]
        return self._combine(idx, self.leaf_values, n)

    def _walk_block(self, x32: np.ndarray) -> np.ndarray:
        n = len(x32)
        node = np.broadcast_to(self.roots[:, None], (self.ensemble.n_trees, n)).copy()
        cols = np.arange(n)[None, :]
        for _ in range(self.depth):
            right = x32[cols, self.walk_feature[node]] > self.walk_threshold[node]
            node = self.walk_children[2 * node + right]
        return self._combine(node, self.walk_value, n)

    def _combine(self, idx: np.ndarray, table: np.ndarray, n: int) -> np.ndarray:
        """Sum (boosting) or mean (forest) of the leaf values ``table[idx]``, idx (trees, n)."""
        ens = self.ensemble
        # rows: [init,] tree 0, tree 1, ...; a sum over axis 0 adds them in this order
        first = 1 if ens.kind == "sum" else 0
        vals = np.empty((ens.n_trees + first, n))
        if first:
            vals[0] = ens.init
        table.take(idx, None, vals[first:], "clip")
        total = vals.sum(axis=0)
        return total if ens.kind == "sum" else total / ens.n_trees

    def linked(self, raw: np.ndarray) -> np.ndarray:
        """The model's output from :meth:`raw`: ``expit`` for boosting classifiers."""
        ens = self.ensemble
        if ens.link == "logistic" and ens.kind == "sum":
            return expit(raw)
        return raw

    def raw_row(self, x: list[float] | tuple[float, ...]) -> float:
        """Combined tree output of one row (plain Python), before the link."""
        x32 = array("f", x)
        if self.row_fn is not None:
            return self.row_fn(x32)
        feat, thr, left, right = self.py_feature, self.py_threshold, self.py_left, self.py_right
        val = self.py_value
        ens = self.ensemble
        total = ens.init if ens.kind == "sum" else 0.0
        for i in self.py_roots:
            f = feat[i]
            while f >= 0:
                i = left[i] if x32[f] <= thr[i] else right[i]
                f = feat[i]
            total += val[i]
        if ens.kind == "mean":
            return total / len(self.py_roots)
        return total

    def predict_row(self, x: list[float] | tuple[float, ...]) -> float:
        """Model output of one row (plain Python): value or probability of class 1."""
        raw = self.raw_row(x)
        ens = self.ensemble
        if ens.link == "logistic" and ens.kind == "sum":
            return float(expit(raw))
        return raw


def compile_ensemble(ens: TreeEnsemble, n_features: int) -> CompiledEnsemble:
    """Prepare the batch tables and the single-row lists of an ensemble.

    Raises
    ------
    DataError
        A split on a feature index >= ``n_features``.
    """
    if ens.n_nodes and int(ens.feature.max(initial=-1)) >= n_features:
        raise DataError("surrogate file: a tree splits on an unknown feature")
    off = ens.offsets
    n_trees = ens.n_trees
    scaled = ens.value * ens.scale if ens.kind == "sum" else ens.value
    leaf = ens.left < 0
    # global indices
    base = np.repeat(off[:-1], np.diff(off))
    g_left = np.where(leaf, np.arange(ens.n_nodes), ens.left + base)
    g_right = np.where(leaf, np.arange(ens.n_nodes), ens.right + base)
    # depth of the deepest leaf: the number of steps of the walk
    max_depth = 0
    frontier = off[:-1]
    while True:
        frontier = frontier[~leaf[frontier]]
        if frontier.size == 0:
            break
        max_depth += 1
        frontier = np.concatenate([g_left[frontier], g_right[frontier]])
    most_leaves = int(np.add.reduceat(leaf.astype(np.int64), off[:-1]).max())
    width = next((w for w in _WIDTHS if most_leaves <= w.bits), _WIDTHS[-1])
    method: Literal["bitmask", "walk"] = "bitmask" if most_leaves <= 64 else "walk"
    ones = width.ones
    split_features: list[int] = []
    thresholds: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    leaf_values = np.zeros(0)
    if method == "bitmask":
        leaf_values = np.zeros(n_trees * width.bits)
        node_mask = np.full(ens.n_nodes, ones, width.dtype)
        node_tree = np.repeat(np.arange(n_trees), np.diff(off))
        for t in range(n_trees):
            lo, hi = int(off[t]), int(off[t + 1])
            lt, rt = ens.left[lo:hi], ens.right[lo:hi]
            order = _leaf_order(lt, rt)
            bit = {node: k for k, node in enumerate(order)}
            for k, node in enumerate(order):
                leaf_values[t * width.bits + width.slot_of_bit(k)] = scaled[lo + node]
            # leaves under each node: [first, last] leaf position, children after parents
            first = np.zeros(hi - lo, np.int64)
            last = np.zeros(hi - lo, np.int64)
            for i in range(hi - lo - 1, -1, -1):
                if lt[i] < 0:
                    first[i] = last[i] = bit[i]
                else:
                    first[i], last[i] = first[lt[i]], last[rt[i]]
            for i in range(hi - lo):
                if lt[i] >= 0:
                    a, b = int(first[lt[i]]), int(last[lt[i]])
                    left_bits = ((1 << (b - a + 1)) - 1) << a
                    node_mask[lo + i] = ~left_bits & ones
        for f in range(n_features):
            nodes = np.flatnonzero((ens.feature == f) & ~leaf)
            if nodes.size == 0:
                continue
            split_features.append(f)
            thr = np.unique(ens.threshold[nodes])
            rank = np.searchsorted(thr, ens.threshold[nodes])
            tab = np.full((len(thr) + 1, n_trees), ones, width.dtype)
            np.bitwise_and.at(tab, (rank + 1, node_tree[nodes]), node_mask[nodes])
            tab = np.bitwise_and.accumulate(tab, axis=0)
            thresholds.append(thr)
            masks.append(tab)
    walk_feature = np.where(leaf, 0, ens.feature).astype(np.intp)
    walk_threshold = np.where(leaf, np.inf, ens.threshold)
    children = np.empty(2 * ens.n_nodes, np.intp)
    children[0::2] = g_left
    children[1::2] = g_right
    return CompiledEnsemble(
        ensemble=ens, n_features=n_features, method=method,
        split_features=tuple(split_features), thresholds=tuple(thresholds),
        masks=tuple(masks), width=width, leaf_values=leaf_values,
        tree_base=np.arange(n_trees, dtype=np.intp) * width.bits, walk_feature=walk_feature,
        walk_threshold=walk_threshold, walk_children=children, walk_value=scaled,
        roots=off[:-1].astype(np.intp), depth=max_depth,
        py_feature=ens.feature.tolist(), py_threshold=ens.threshold.tolist(),
        py_left=g_left.tolist(), py_right=g_right.tolist(), py_value=scaled.tolist(),
        py_roots=off[:-1].tolist(),
        row_fn=_row_function(ens, n_features) if max_depth <= MAX_CODEGEN_DEPTH else None,
    )


def _row_function(ens: TreeEnsemble, n_features: int) -> Callable[[array], float]:
    """Compile the ensemble into ``f(x32) -> raw output`` (see the module docstring).

    Same operations in the same order as :meth:`CompiledEnsemble.raw_row`: start from
    ``init`` (or 0), add each tree's (scaled) leaf value in tree order, divide forests by the
    number of trees.
    """
    scaled = (ens.value * ens.scale if ens.kind == "sum" else ens.value).tolist()
    feat, thr = ens.feature.tolist(), ens.threshold.tolist()
    left, right = ens.left.tolist(), ens.right.tolist()

    def expr(base: int, i: int) -> str:
        j = base + i
        if left[j] < 0:
            return repr(float(scaled[j]))
        return (f"({expr(base, left[j])} if x{int(feat[j])} <= {float(thr[j])!r} "
                f"else {expr(base, right[j])})")

    names = ", ".join(f"x{i}" for i in range(n_features))
    start = repr(float(ens.init)) if ens.kind == "sum" else "0.0"
    lines = ["def f(x):", f"    {names}, = x", f"    t = {start}"]
    lines += [f"    t += {expr(int(b), 0)}" for b in ens.offsets[:-1]]
    lines.append("    return t" if ens.kind == "sum" else f"    return t / {ens.n_trees}")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<loratwin tree ensemble>", "exec"), namespace)
    return namespace["f"]



@dataclass(frozen=True)
class EnsembleGroup:
    """Ensembles over the same inputs scored together (the targets of one surrogate).

    The bitmask evaluator's first step, the rank of each row's value among a feature's
    thresholds (one binary search per row and feature), costs about as much as the rest.
    The group searches once per feature in the sorted union of all members' thresholds;
    each member's rank is read off a table: a row with value v has ``b_u`` union
    thresholds below it, the largest of them ``u[b_u - 1]``, so its rank among a
    member's thresholds ``t`` (a subset of ``u``) is the number of ``t <= u[b_u - 1]``
    (0 for ``b_u = 0``): exactly the rank the member computes on its own, so the answers
    are bit-identical to :meth:`CompiledEnsemble.predict`.

    Build with :func:`compile_group`; score with :meth:`predict`.
    """

    members: dict[str, CompiledEnsemble]
    features: tuple[int, ...]  # features some bitmask member splits on
    thresholds: tuple[np.ndarray, ...]  # per feature: sorted union of the thresholds
    slots: dict[str, tuple[int, ...]]  # per bitmask member: index in ``features`` per split
    rank_maps: dict[str, tuple[np.ndarray, ...]]  # per member and split: union rank -> own

    def predict(self, x: np.ndarray, names: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
        """Outputs of the members ``names`` (as :meth:`CompiledEnsemble.predict`) for x
        (n, n_features): a dict of (n,) arrays.

        Raises
        ------
        ValueError
            x is not (n, n_features).
        KeyError
            An unknown member.
        """
        x = np.asarray(x, dtype=np.float64)
        members = [self.members[k] for k in names]
        n_features = members[0].n_features if members else 0
        if members and (x.ndim != 2 or x.shape[1] != n_features):
            raise ValueError(f"expected an (n, {n_features}) array, got {x.shape}")
        raw = {k: np.empty(len(x)) for k in names}
        needed = sorted({j for k in names for j in self.slots.get(k, ())})
        x32 = x.astype(np.float32).astype(np.float64)
        # one search per feature for all rows, then each member's ranks by table lookup
        upos = {j: np.searchsorted(self.thresholds[j], x32[:, self.features[j]], side="left")
                for j in needed}
        for k, c in zip(names, members, strict=True):
            if c.method == "walk":
                for s in range(0, len(x), _BLOCK):
                    raw[k][s:s + _BLOCK] = c._walk_block(x32[s:s + _BLOCK])
                continue
            pos = [m.take(upos[j]) for m, j in zip(self.rank_maps[k], self.slots[k],
                                                   strict=True)]
            for s in range(0, len(x), _BLOCK):
                raw[k][s:s + _BLOCK] = c._bitmask_block([b[s:s + _BLOCK] for b in pos],
                                                        min(_BLOCK, len(x) - s))
        return {k: c.linked(raw[k]) for k, c in zip(names, members, strict=True)}


def compile_group(members: dict[str, CompiledEnsemble]) -> EnsembleGroup:
    """The :class:`EnsembleGroup` of compiled ensembles over the same inputs.

    Raises
    ------
    ValueError
        Members with different numbers of inputs.
    """
    if len({c.n_features for c in members.values()}) > 1:
        raise ValueError("the ensembles of a group must have the same inputs")
    bitmask = {k: c for k, c in members.items() if c.method == "bitmask"}
    features = sorted({f for c in bitmask.values() for f in c.split_features})
    union = [np.unique(np.concatenate([t for c in bitmask.values()
                                       for f2, t in zip(c.split_features, c.thresholds,
                                                        strict=True) if f2 == f]))
             for f in features]
    where = {f: j for j, f in enumerate(features)}
    slots: dict[str, tuple[int, ...]] = {}
    rank_maps: dict[str, tuple[np.ndarray, ...]] = {}
    for k, c in bitmask.items():
        slots[k] = tuple(where[f] for f in c.split_features)
        rank_maps[k] = tuple(
            np.concatenate([[0], np.searchsorted(t, union[where[f]], side="right")]
                           ).astype(np.intp)
            for f, t in zip(c.split_features, c.thresholds, strict=True))
    return EnsembleGroup(members=dict(members), features=tuple(features),
                         thresholds=tuple(union), slots=slots, rank_maps=rank_maps)
