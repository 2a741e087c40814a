"""Fit the prior's shared constants on measured profiles (``--calibrate-on``).

A measured profile is a step-time function and a table of start-up memory; the prior has
the same structure with a handful of constants per GPU family, shared by every model. The
constants are fitted on the chosen profiles at once:

* **step efficiencies** (:class:`~loratwin.calibrate.prior_roofline.Efficiency`): the
  prior's step time is linear in the two fixed step costs (per step and per layer), the
  inverse tensor-core efficiencies and the per-request costs (the streaming efficiency is
  assumed, not fitted), so they are the non-negative least-squares solution that matches the
  calibration profiles' own step times (relative error) over a fixed design of serving steps
  (:data:`STEP_DESIGN`): decode batches of 8-1,024 requests with short and long contexts,
  prefill and mixed steps filling the 2,048-token budget, and LoRA decode steps with 8-300
  slots of rank 8-32 and 1-128 distinct adapters. The twin's own cost model evaluates both
  sides, so the prior is fitted to what the twin does with the measured profile. The fixed
  cost per layer is separable from the fixed cost per step only across calibration models
  of different layer counts; when every calibration model has the same number of layers
  (one profile, as in leave-one-model-out) it is not fitted (0) and the whole fixed cost
  stays per step, as measured;
* **memory constants** (:class:`~loratwin.calibrate.prior_memory.MemoryConstants`): least
  squares of the memory the measured KV sizes leave unexplained once weights and slot
  buffers are computed tensor by tensor (no-LoRA sizes per ``max_num_seqs`` and the LoRA
  table);
* the scheduler CPU constants, the serving constants and the front-end latency are CPU and
  vLLM constants and are averaged as they are.

Each calibration profile must name a model of the bundled config table (its
``hf_model_name``) and a GPU of the GPU table (its ``gpu`` text); measured profiles are
single-GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from loratwin.calibrate.prior_gpu import GpuSpec, gpu_of_profile
from loratwin.calibrate.prior_memory import (
    PROFILE_TOKENS,
    MemoryConstants,
    sampler_vocab,
    slots_bytes,
    weights_bytes,
)
from loratwin.calibrate.prior_model import Shard, bundled_model_name, load_model_spec
from loratwin.calibrate.prior_roofline import STREAM_EFFICIENCY, Efficiency, physics
from loratwin.errors import ConfigError
from loratwin.profile.model import GIB, Profile, StepCoefficients
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost


@dataclass(frozen=True)
class CalibrationSource:
    """A measured profile with the model shapes and the GPU it was measured on."""

    profile: Profile
    shard: Shard
    gpu: GpuSpec

    @staticmethod
    def of(profile: Profile) -> CalibrationSource:
        """Resolve the model config and GPU of ``profile``.

        Raises
        ------
        ConfigError
            The profile is itself a prior, or its model or GPU is not in the bundled tables.
        """
        if profile.profile_kind == "prior":
            raise ConfigError(f"{profile.name} is a prior profile; calibrate on measured or "
                              "collected profiles", field="--calibrate-on")
        name = bundled_model_name(profile.hf_model_name)
        if name is None:
            raise ConfigError(f"profile {profile.name}: model {profile.hf_model_name!r} has no "
                              "bundled config", field="--calibrate-on")
        spec = load_model_spec(name)
        return CalibrationSource(profile, Shard.of(spec, 1), gpu_of_profile(profile.gpu))


# ----------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class DesignStep:
    """One step of the fit design: the server and the step's composition."""

    server: ServerConfig
    num_tokens: int
    n_decode: int
    n_prefill: int
    context_tokens: int
    n_adapters: int


def _design() -> tuple[DesignStep, ...]:
    steps: list[DesignStep] = []
    plain = ServerConfig(enable_lora=False, max_num_seqs=1024, max_num_batched_tokens=2048)
    for n in (8, 16, 32, 64, 128, 256, 384, 512, 640, 768, 1024):
        for ctx in (32, 128, 512):
            steps.append(DesignStep(plain, n, n, 0, n * ctx, 1))
    for n_pref in (1, 2, 5, 10, 20):
        steps.append(DesignStep(plain, 2048, 0, n_pref, 0, 1))
    for n_dec in (32, 128, 256):
        for n_pref in (1, 4):
            steps.append(DesignStep(plain, 2048, n_dec, n_pref, n_dec * 128, 1))
    for max_loras in (8, 32, 128, 300):
        for rank in (8, 16, 32):
            server = ServerConfig(max_loras=max_loras, max_lora_rank=rank, max_num_seqs=1024,
                                  max_num_batched_tokens=2048)
            for n in (32, 128, 256):
                for k in sorted({1, 8, 32, 128}):
                    na = min(k, max_loras, n)
                    steps.append(DesignStep(server, n, n, 0, n * 128, na))
            steps.append(DesignStep(server, 2048, 128, 4, 128 * 128, min(8, max_loras)))
    return tuple(steps)


#: The serving steps the step efficiencies are fitted on (module docstring).
STEP_DESIGN: tuple[DesignStep, ...] = _design()

_COEF_FIELDS = ("base_s", "per_token_s", "per_decode_seq_s", "per_context_token_s",
                "per_prefill_req_s", "lora_empty_cta_s", "lora_work_cta_s")
_THETA = ("step_s", "layer_s", "inv_flops", "inv_attention", "decode_seq_s", "prefill_req_s",
          "lora_empty_cycles", "lora_work_bytes")


def _basis_costs(profile: Profile, server: ServerConfig) -> dict[str, StepCost]:
    """One twin cost model per coefficient, that coefficient 1 and the others 0."""
    frac = profile.step.split_k_fixed_fraction
    zero = dict.fromkeys(StepCoefficients.model_fields, 0.0)
    out = {}
    for f in _COEF_FIELDS:
        coefs = StepCoefficients(**{**zero, f: 1.0, "split_k_fixed_fraction": frac})
        out[f] = StepCost(profile.model_copy(update={"step": coefs}), server)
    return out


def _phi(src: CalibrationSource) -> np.ndarray:
    """Matrix (coefficient x theta): coefficient_j = sum_k phi[j, k] theta_k."""
    p = physics(src.shard, src.gpu)
    phi = np.zeros((len(_COEF_FIELDS), len(_THETA)))
    phi[0, 0] = 1.0
    phi[0, 1] = float(src.shard.spec.num_layers)
    phi[1, 2] = p["flops_s"]
    phi[2, 2] = p["lm_head_s"]
    phi[2, 4] = 1.0
    phi[3, 3] = p["attention_s"]
    phi[4, 2] = p["lm_head_s"]
    phi[4, 5] = 1.0
    phi[5, 6] = 1.0 / p["sm_cycles_s"]
    phi[6, 7] = 1.0 / p["hbm_bytes_s"]
    return phi


def step_design_rows(src: CalibrationSource) -> tuple[np.ndarray, np.ndarray]:
    """(features per coefficient, target step time) of every design step for one profile.

    Features are the twin's step time with one unit coefficient; the target is the measured
    profile's step time without the eager LoRA launch (copied unchanged into the prior) and
    without the prior's fixed streaming terms (weights, sampling penalties).
    """
    p = physics(src.shard, src.gpu)
    fixed_base = p["weights_s"] / STREAM_EFFICIENCY
    fixed_seq = p["penalty_s"] / STREAM_EFFICIENCY
    feats, target = [], []
    by_server: dict[ServerConfig, list[DesignStep]] = {}
    for st in STEP_DESIGN:
        by_server.setdefault(st.server, []).append(st)
    prof = src.profile
    eager_only = prof.step.model_copy(update=dict.fromkeys(_COEF_FIELDS, 0.0))
    for server, steps in by_server.items():
        basis = _basis_costs(prof, server)
        full = StepCost(prof, server)
        eager = StepCost(prof.model_copy(update={"step": eager_only}), server)
        for st in steps:
            args = (st.num_tokens, st.n_decode, st.n_prefill, st.context_tokens, st.n_adapters)
            row = [basis[f].exec_s(*args) for f in _COEF_FIELDS]
            feats.append(row)
            target.append(full.exec_s(*args) - eager.exec_s(*args)
                          - fixed_base * row[0] - fixed_seq * row[2])
    return np.array(feats), np.array(target)


def fit_step_efficiency(sources: list[CalibrationSource]
                        ) -> tuple[dict[str, float], dict[str, float | int | str]]:
    """Inverse efficiencies and per-request costs by relative NNLS over the design steps.

    The fixed cost per layer (``layer_s``) is fitted only when the calibration models have
    more than one layer count; otherwise its column equals the per-step one times a
    constant, and it is left at 0 (module docstring).

    Returns the fitted theta (names of ``_THETA``) and a report with the mean and maximum
    relative step-time error on each calibration profile's design and how the fixed cost
    was split (``fixed_cost``).
    """
    rows, ys, owner = [], [], []
    for i, src in enumerate(sources):
        f, y = step_design_rows(src)
        rows.append(f @ _phi(src))
        ys.append(y)
        owner += [i] * len(y)
    a = np.vstack(rows)
    y = np.concatenate(ys)
    split = len({src.shard.spec.num_layers for src in sources}) > 1
    keep = np.array([split or name != "layer_s" for name in _THETA])
    scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)
    sol, _ = nnls((a[:, keep] / scale[keep]) / y[:, None], np.ones_like(y))
    theta = np.zeros(len(_THETA))
    theta[keep] = sol / scale[keep]
    err = np.abs(a @ theta - y) / y
    own = np.array(owner)
    report: dict[str, float | int | str] = {
        "design_steps": int(len(y) // len(sources)),
        "fixed_cost": ("per step + per layer" if split
                       else "per step only (one layer count: per layer not separable)"),
    }
    for i, src in enumerate(sources):
        report[f"{src.profile.name}_mean_rel_err_pct"] = 100 * float(err[own == i].mean())
        report[f"{src.profile.name}_max_rel_err_pct"] = 100 * float(err[own == i].max())
    return dict(zip(_THETA, map(float, theta), strict=True)), report


def fit_efficiency(sources: list[CalibrationSource]
                   ) -> tuple[Efficiency, dict[str, float | int | str]]:
    """The shared :class:`Efficiency` of ``sources`` (step fit + averaged CPU constants)."""
    theta, report = fit_step_efficiency(sources)
    steps = [s.profile.step for s in sources]

    def mean(attr: str) -> float:
        return float(np.mean([getattr(c, attr) for c in steps]))

    def inv(x: float) -> float:
        if x <= 0:
            raise ConfigError("the calibration profiles leave an efficiency factor "
                              "undetermined", field="--calibrate-on")
        return 1.0 / x

    weights = STREAM_EFFICIENCY
    # decode attention reads the KV cache at least at the streaming efficiency, or as
    # efficiently as a calibration profile shows it does (its context cost as a KV read)
    kv = max([weights] + [physics(s.shard, s.gpu)["kv_s"] / s.profile.step.per_context_token_s
                          for s in sources if s.profile.step.per_context_token_s > 0])
    eff = Efficiency(
        step_s=theta["step_s"],
        layer_s=theta["layer_s"],
        weights=weights,
        flops=inv(theta["inv_flops"]),
        kv=min(kv, 1.0),
        attention=inv(theta["inv_attention"]),
        decode_seq_s=theta["decode_seq_s"],
        prefill_req_s=theta["prefill_req_s"],
        lora_empty_cycles=theta["lora_empty_cycles"],
        lora_work_bytes=theta["lora_work_bytes"],
        lora_eager_layer_s=mean("lora_eager_layer_s"),
        split_k_fixed_fraction=mean("split_k_fixed_fraction"),
        sched_base_s=mean("sched_base_s"),
        sched_per_running_s=mean("sched_per_running_s"),
        sched_per_walked_s=mean("sched_per_walked_s"),
        frontend_latency_s=float(np.mean([s.profile.frontend_latency_s for s in sources])),
    )
    return eff, report


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class _MemRow:
    source: int
    lora: bool
    max_num_seqs: int
    unexplained: float  # bytes


def _memory_rows(sources: list[CalibrationSource]) -> list[_MemRow]:
    rows = []
    for i, src in enumerate(sources):
        p, sh = src.profile, src.shard
        budget = p.gpu_memory_utilization_measured * p.gpu_total_memory_gib * GIB
        bpt = sh.kv_bytes_per_token()
        w0 = weights_bytes(sh, False)
        for seqs, tokens in p.kv.no_lora_by_max_num_seqs.items():
            rows.append(_MemRow(i, False, int(seqs), budget - w0 - tokens * bpt))
        w1 = weights_bytes(sh, True)
        for pt in p.kv.points:
            if pt.kv_cache_tokens is None:
                continue
            load = w1 + slots_bytes(sh, pt.max_loras, pt.max_lora_rank)
            rows.append(_MemRow(i, True, p.kv.reference_max_num_seqs,
                                budget - load - pt.kv_cache_tokens * bpt))
    return rows


def _memory_model(x: np.ndarray, src: CalibrationSource, row: _MemRow) -> float:
    non_torch, fwd, samp, lora = x
    sh = src.shard
    seqs = min(row.max_num_seqs, PROFILE_TOKENS)
    peak = max(fwd * PROFILE_TOKENS * (sh.spec.hidden_size + sh.intermediate),
               samp * seqs * sampler_vocab(sh, row.lora))
    extra = lora * PROFILE_TOKENS * sh.intermediate if row.lora else 0.0
    return non_torch * GIB + peak + extra


def fit_memory_constants(sources: list[CalibrationSource]
                         ) -> tuple[MemoryConstants, dict[str, float | int | str]]:
    """Least squares (GiB) of the memory the measured KV sizes leave unexplained.

    Returns the constants and a report with each profile's mean and maximum absolute
    residual (GiB); the start-up failures are checked by ``benchmarks/prior_accuracy.py``.
    """
    rows = _memory_rows(sources)

    def resid(x: np.ndarray) -> np.ndarray:
        return np.array([(_memory_model(x, sources[r.source], r) - r.unexplained) / GIB
                         for r in rows])

    fit = least_squares(resid, np.array([0.7, 10.0, 14.0, 8.0]), bounds=(0.0, np.inf))
    res = resid(fit.x)
    owner = np.array([r.source for r in rows])
    graph = float(np.mean([s.profile.kv.cuda_graph_gib / s.shard.spec.num_layers
                           for s in sources]))
    consts = MemoryConstants(
        non_torch_gib=float(fit.x[0]), forward_bytes=float(fit.x[1]),
        sampler_bytes=float(fit.x[2]), lora_bytes=float(fit.x[3]),
        cuda_graph_gib_per_layer=graph,
    )
    report: dict[str, float | int | str] = {"rows": len(rows)}
    for i, src in enumerate(sources):
        r = np.abs(res[owner == i])
        report[f"{src.profile.name}_mean_abs_gib"] = float(r.mean())
        report[f"{src.profile.name}_max_abs_gib"] = float(r.max())
    return consts, report


__all__ = [
    "STEP_DESIGN",
    "CalibrationSource",
    "DesignStep",
    "fit_efficiency",
    "fit_memory_constants",
    "fit_step_efficiency",
    "step_design_rows",
]
