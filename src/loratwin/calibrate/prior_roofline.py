"""A roofline of one engine step, expressed in the twin's step-cost coefficients.

The twin prices a step as (:mod:`loratwin.twin.cost`)::

    base + per_token*M + per_decode_seq*n_decode + per_context_token*ctx
    + per_prefill_req*n_prefill + LoRA thread blocks + scheduler CPU

Each coefficient is a physical cost of the model on one GPU divided by a datasheet rate
and an efficiency factor (:class:`Efficiency`), the same factors for every model:

* ``base``: a fixed cost per step (CPU input preparation, the sampler's fixed work; fitted),
  a fixed cost per layer and step (the layer's kernels' launch and minimum-duration latency,
  paid whatever the batch; fitted) and the weights (every layer's linear weights, the LM head
  and the norms) read once per step from HBM at the streaming efficiency:
  ``step_s + layer_s x layers + weight_bytes / (STREAM_EFFICIENCY x HBM bandwidth)``;
* ``per_token``: the linear layers' FLOPs, ``2 x linear params / (eff_flops x dense FLOP/s)``;
* ``per_decode_seq``: the LM head of each sampled token on the tensor cores, a fixed
  per-request cost (output processing), and for models whose generation config sets a
  repetition, frequency or presence penalty (applied by vLLM to every request that does not
  override it) the penalty passes over the request's logits, ``PENALTY_BYTES_PER_LOGIT x
  vocab / (STREAM_EFFICIENCY x HBM bandwidth)``;
* ``per_context_token``: decode attention, a roofline of two terms per context token: K and V
  are read from HBM, ``kv_bytes_per_token / (eff_kv x HBM bandwidth)``, and every query head
  multiplies them, ``4 x q_size x layers / (eff_attention x dense FLOP/s)``; grouped-query
  models (Llama-3.1, Qwen2.5) sit on the second term, multi-head ones (OPT, Llama-2) on the
  first;
* ``per_prefill_req``: a fixed per-request cost of the requests with a prompt chunk;
* LoRA thread blocks (``lora_shrink``/``lora_expand``, their shapes from the model's layer
  sizes): an empty block costs a fixed number of SM-cycles, ``cycles / (SMs x clock)``; a
  working block streams a fixed number of bytes, ``bytes / HBM bandwidth``;
* tensor parallelism ``tp``: weights, FLOPs, KV heads and LM head are split ``tp`` ways, and
  every layer adds two ring all-reduces of the step's hidden states (after o_proj and
  down_proj, vLLM's ``RowParallelLinear``): ``latency + 2 (tp - 1)/tp x M x hidden x 2 B /
  (eff_link x link bandwidth)``, and the LM head's logits are gathered.

The serving constants (eager LoRA launch, split-K fraction), the scheduler CPU costs and the
front-end latency are CPU and vLLM constants, taken from the calibration profiles as they
are (:mod:`loratwin.calibrate.prior_fit`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from loratwin.calibrate.prior_gpu import GpuSpec
from loratwin.calibrate.prior_model import Shard
from loratwin.profile.model import StepCoefficients

#: Fraction of the datasheet HBM bandwidth that streaming kernels (weight reads at small
#: batch, KV reads, element-wise passes over the logits) reach: a physics assumption, not
#: fitted (the calibration profiles cannot separate it from the fixed per-step cost).
STREAM_EFFICIENCY = 0.9
#: HBM bytes per (request x vocabulary entry) of vLLM 0.8.5's penalty kernels
#: (``vllm/model_executor/layers/utils.py`` ``apply_penalties``: two int64 bin counts and
#: masks, the repetition factors, the sign-dependent scaling and the frequency and presence
#: updates of the float32 logits), counted tensor by tensor.
PENALTY_BYTES_PER_LOGIT = 129
#: Latency of one NCCL / custom all-reduce of a small message, s. Not measured here (no
#: tensor-parallel calibration data): a typical NVLink figure, stated in docs/prior.md.
ALLREDUCE_LATENCY_S = 8e-6
#: Fraction of the link bandwidth a ring all-reduce reaches (assumed, not fitted).
LINK_EFFICIENCY = 0.8


class Efficiency(BaseModel):
    """Efficiency factors and per-request costs, fitted once and shared by all models.

    Attributes
    ----------
    step_s:
        Fixed cost per engine step, s (whatever the model's size).
    layer_s:
        Fixed cost per decoder layer and engine step, s (kernel launch and minimum-duration
        latency; 0 when the calibration models share one layer count, see
        :mod:`loratwin.calibrate.prior_fit`).
    weights:
        Fraction of the HBM bandwidth reached reading the weights (``STREAM_EFFICIENCY``).
    flops:
        Fraction of the dense tensor-core FLOP/s reached by the linear layers.
    kv:
        Fraction of the HBM bandwidth reached by decode attention reading the KV cache.
    attention:
        Fraction of the dense FLOP/s reached by decode attention per query head (small:
        the kernels are latency-bound at one query token per sequence).
    decode_seq_s, prefill_req_s:
        Fixed cost per decoding request and per request with a prompt chunk, s.
    lora_empty_cycles:
        SM-cycles of one empty LoRA thread block.
    lora_work_bytes:
        HBM bytes equivalent to one working LoRA thread block.
    lora_eager_layer_s, split_k_fixed_fraction:
        Serving constants (:mod:`loratwin.profile.serving`), copied.
    sched_base_s, sched_per_running_s, sched_per_walked_s, frontend_latency_s:
        Scheduler CPU and front-end costs of the calibration profiles, copied.
    """

    model_config = ConfigDict(frozen=True)

    step_s: float = Field(ge=0)
    layer_s: float = Field(default=0.0, ge=0)
    weights: float = Field(gt=0)
    flops: float = Field(gt=0)
    kv: float = Field(gt=0)
    attention: float = Field(gt=0)
    decode_seq_s: float = Field(ge=0)
    prefill_req_s: float = Field(ge=0)
    lora_empty_cycles: float = Field(ge=0)
    lora_work_bytes: float = Field(ge=0)
    lora_eager_layer_s: float = Field(ge=0)
    split_k_fixed_fraction: float = Field(ge=0, le=1)
    sched_base_s: float = Field(ge=0)
    sched_per_running_s: float = Field(ge=0)
    sched_per_walked_s: float = Field(ge=0)
    frontend_latency_s: float = Field(ge=0)


def weight_bytes_read(shard: Shard) -> float:
    """Bytes of weights one step reads on one GPU: every layer, the LM head and norms.

    The embedding lookup reads only the step's rows and is left out; a tied LM head is the
    embedding matrix and is read once.
    """
    s = shard.spec
    b = s.dtype_bytes
    layer = shard.linear_params_per_layer() + s.norms * s.hidden_size
    lm_head = s.vocab_size // shard.tp * s.hidden_size
    return float((s.num_layers * layer + lm_head + s.hidden_size) * b)


def linear_flops_per_token(shard: Shard) -> float:
    """FLOPs of the linear layers for one token on one GPU (2 x multiply-adds, no LM head)."""
    return 2.0 * shard.spec.num_layers * shard.linear_params_per_layer()


def lm_head_flops(shard: Shard) -> float:
    """FLOPs of the LM head for one sampled token on one GPU."""
    s = shard.spec
    return 2.0 * s.hidden_size * (s.vocab_size // shard.tp)


def attention_flops_per_context_token(shard: Shard) -> float:
    """Decode-attention FLOPs per context token on one GPU: QK^T and PV, all query heads."""
    return 4.0 * shard.q_size * shard.spec.num_layers


def physics(shard: Shard, gpu: GpuSpec) -> dict[str, float]:
    """The physical quantities each efficiency factor divides.

    Keys: ``weights_s`` (weights / HBM B/s, s), ``flops_s`` (linear FLOPs per token /
    FLOP/s, s), ``lm_head_s`` (s per sampled token), ``kv_s`` (KV bytes per context token /
    HBM B/s, s), ``attention_s`` (attention FLOPs per context token / FLOP/s, s),
    ``penalty_s`` (penalty bytes per decoding request / HBM B/s, s; 0 without penalties),
    ``sm_cycles_s`` (1/s), ``hbm_bytes_s`` (B/s).
    """
    flops = gpu.flops(shard.spec.dtype)
    return {
        "weights_s": weight_bytes_read(shard) / gpu.hbm_bytes_s,
        "flops_s": linear_flops_per_token(shard) / flops,
        "lm_head_s": lm_head_flops(shard) / flops,
        "kv_s": shard.kv_bytes_per_token() / gpu.hbm_bytes_s,
        "attention_s": attention_flops_per_context_token(shard) / flops,
        "penalty_s": (PENALTY_BYTES_PER_LOGIT * shard.spec.vocab_size / gpu.hbm_bytes_s
                      if shard.spec.sampling_penalties else 0.0),
        "sm_cycles_s": gpu.sm_cycles_s,
        "hbm_bytes_s": gpu.hbm_bytes_s,
    }


def tp_costs(shard: Shard, gpu: GpuSpec) -> tuple[float, float, float]:
    """(per-step s, per-token s, per-sampled-token s) of tensor-parallel communication."""
    tp = shard.tp
    if tp == 1:
        return 0.0, 0.0, 0.0
    s = shard.spec
    link = LINK_EFFICIENCY * gpu.link_bytes_s
    ring = 2.0 * (tp - 1) / tp
    per_step = 2 * s.num_layers * ALLREDUCE_LATENCY_S + ALLREDUCE_LATENCY_S
    per_token = 2 * s.num_layers * ring * s.hidden_size * s.dtype_bytes / link
    per_seq = (tp - 1) / tp * s.vocab_size * s.dtype_bytes / link
    return per_step, per_token, per_seq


def fixed_step_s(shard: Shard, eff: Efficiency) -> float:
    """Fixed cost of one step of ``shard`` besides the weight read, s: per step + per layer."""
    return eff.step_s + eff.layer_s * shard.spec.num_layers


def step_coefficients(shard: Shard, gpu: GpuSpec, eff: Efficiency) -> StepCoefficients:
    """The twin's step coefficients of ``shard`` on ``gpu`` (module docstring), in s."""
    p = physics(shard, gpu)
    step_tp, token_tp, seq_tp = tp_costs(shard, gpu)
    lm_head = p["lm_head_s"] / eff.flops + seq_tp
    return StepCoefficients(
        base_s=fixed_step_s(shard, eff) + p["weights_s"] / eff.weights + step_tp,
        per_token_s=p["flops_s"] / eff.flops + token_tp,
        per_decode_seq_s=lm_head + eff.decode_seq_s + p["penalty_s"] / eff.weights,
        per_context_token_s=max(p["kv_s"] / eff.kv, p["attention_s"] / eff.attention),
        per_prefill_req_s=lm_head + eff.prefill_req_s,
        lora_empty_cta_s=eff.lora_empty_cycles / p["sm_cycles_s"],
        lora_work_cta_s=eff.lora_work_bytes / p["hbm_bytes_s"],
        lora_eager_layer_s=eff.lora_eager_layer_s,
        split_k_fixed_fraction=eff.split_k_fixed_fraction,
        sched_base_s=eff.sched_base_s,
        sched_per_running_s=eff.sched_per_running_s,
        sched_per_walked_s=eff.sched_per_walked_s,
    )


__all__ = [
    "ALLREDUCE_LATENCY_S",
    "LINK_EFFICIENCY",
    "PENALTY_BYTES_PER_LOGIT",
    "STREAM_EFFICIENCY",
    "Efficiency",
    "attention_flops_per_context_token",
    "fixed_step_s",
    "linear_flops_per_token",
    "lm_head_flops",
    "physics",
    "step_coefficients",
    "tp_costs",
    "weight_bytes_read",
]
