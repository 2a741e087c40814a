"""vLLM 0.8.5's start-up memory arithmetic: weights, LoRA slot buffers, activations, KV cache.

The KV cache vLLM allocates at start-up (``vllm/v1/worker/gpu_worker.py``
``determine_available_memory``, release 0.8.5) is::

    available = gpu_memory_utilization x total - peak_torch - non_torch
    num_blocks = available // (page_bytes x layers)        (kv_cache_utils.py)

where ``peak_torch`` is PyTorch's peak allocated memory during ``profile_run`` (weights,
LoRA slot buffers and the activations of one dummy batch of ``max_num_batched_tokens``
tokens spread over ``max_num_seqs`` requests, then the sampler on ``max_num_seqs`` rows of
logits) and ``non_torch`` what CUDA holds outside PyTorch (context, cuBLAS workspaces).

This module computes every term from the model's shapes:

* **weights** and **LoRA slot buffers** tensor by tensor, each rounded as PyTorch's CUDA
  caching allocator counts it (512 B granules; allocations of 10 MiB or more take a segment
  rounded up to 2 MiB and keep the whole segment when less than 1 MiB would be left,
  ``c10/cuda/CUDACachingAllocator.cpp``). The slot buffers are those of
  ``vllm/lora/layers.py`` (``create_lora_weights`` of every wrapped layer: qkv, o, gate_up,
  down, and for models whose ``embedding_modules`` vLLM wraps, the embeddings and the
  logits processor with their extra-vocabulary tensors). On the measured Qwen2.5-7B table
  this reproduces the logged model load (weights + slots) to 0.0003 GiB at every
  (``max_loras``, ``max_lora_rank``), its 0.33 GiB saw-tooth included;
* **activations**: the forward pass of the dummy batch, ``c_forward x tokens x (hidden +
  intermediate)`` bytes, the sampler, ``c_sampler x max_num_seqs x vocab`` bytes (the
  float32 logits and the sort buffers of top-k/top-p), the peak being the larger of the two,
  plus with LoRA ``c_lora x tokens x intermediate`` bytes (intermediates the LoRA custom ops
  keep alive), and the non-torch memory: these four constants are fitted on the measured
  profiles (:func:`loratwin.calibrate.prior_fit.fit_memory_constants`), shared by all models;
* the **start-up failures** of ``kv_cache_utils.py`` ``check_enough_kv_cache_memory``: no
  memory left (``no_memory_for_kv_cache``), a KV cache smaller than one request of
  ``max_model_len`` (``kv_cache_smaller_than_max_model_len``), and a profiling pass that
  does not fit in the physical memory (``cuda_oom``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loratwin.calibrate.prior_gpu import GpuSpec
from loratwin.calibrate.prior_model import Shard
from loratwin.profile.model import GIB, KVModel, KVPoint

MIB = 1 << 20
_SMALL = MIB  # kSmallSize
_MIN_LARGE = 10 * MIB  # kMinLargeAlloc
_ROUND_LARGE = 2 * MIB  # kRoundLarge

#: vLLM 0.8.5 LoRAConfig defaults (vllm/config.py).
LORA_EXTRA_VOCAB = 256
LORA_VOCAB_PADDING = 256
DEFAULT_VOCAB_PADDING = 64  # vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE

#: The ``max_num_batched_tokens`` of the profiling pass the tables assume (the measured
#: profiles' 2048).
PROFILE_TOKENS = 2048
#: ``max_num_seqs`` at which the LoRA table is tabulated (as the measured profiles).
REFERENCE_MAX_NUM_SEQS = 2048
#: ``max_num_seqs`` values of the no-LoRA table.
NO_LORA_SEQS = (1, 8, 16, 32, 50, 64, 100, 128, 200, 256, 400, 512, 600, 800, 1000, 1024,
                1536, 2048)
#: Slot ranks tabulated (vLLM's allowed ``max_lora_rank`` values up to 64).
TABLE_RANKS = (8, 16, 32, 64)


def alloc_bytes(size: int) -> int:
    """Bytes PyTorch's CUDA caching allocator counts for one tensor in a fresh segment.

    Sizes are rounded to 512 B; a tensor of 10 MiB or more gets a new segment rounded up to
    2 MiB, and the segment is split only if more than 1 MiB would remain (``should_split``),
    else the whole segment counts as allocated. :func:`allocated_bytes` also reuses the free
    remainders of earlier segments, as the allocator does.
    """
    if size <= 0:
        return 0
    rs = -(-size // 512) * 512
    if rs < _MIN_LARGE:
        return rs
    seg = -(-rs // _ROUND_LARGE) * _ROUND_LARGE
    return rs if seg - rs > _SMALL else seg


_SMALL_SEGMENT = 2 * MIB  # kSmallBuffer
_LARGE_SEGMENT = 20 * MIB  # kLargeBuffer


@dataclass(frozen=True)
class AllocatorState:
    """What the caching allocator holds after a sequence of allocations (nothing freed).

    ``total``: bytes counted as allocated; ``free_small`` / ``free_large``: sorted sizes of
    the free blocks left in the small (<= 1 MiB requests) and large pools.
    """

    total: int = 0
    free_small: tuple[int, ...] = ()
    free_large: tuple[int, ...] = ()


def allocate(sizes: list[int], state: AllocatorState = AllocatorState()) -> AllocatorState:
    """Allocate ``sizes`` in order, starting from ``state``; return the new state.

    A small re-statement of ``c10/cuda/CUDACachingAllocator.cpp`` (PyTorch 2.x, default
    configuration): requests are rounded to 512 B; up to 1 MiB they come from 2 MiB segments
    (small pool), above from the large pool, where the smallest free block that fits is
    taken; a new large segment is 20 MiB below 10 MiB and the request rounded up to 2 MiB
    otherwise; a block is split when the rest is at least 512 B (small pool) or more than
    1 MiB (large pool), else the whole block counts as allocated.
    """
    free_small = list(state.free_small)
    free_large = list(state.free_large)
    total = state.total
    for size in sizes:
        if size <= 0:
            continue
        rs = -(-size // 512) * 512
        small = rs <= _SMALL
        pool = free_small if small else free_large
        i = bisect.bisect_left(pool, rs)
        if i < len(pool):
            block = pool.pop(i)
        elif small:
            block = _SMALL_SEGMENT
        else:
            block = _LARGE_SEGMENT if rs < _MIN_LARGE else -(-rs // _ROUND_LARGE) * _ROUND_LARGE
        rest = block - rs
        if rest >= 512 if small else rest > _SMALL:
            bisect.insort(pool, rest)
            total += rs
        else:
            total += block
    return AllocatorState(total, tuple(free_small), tuple(free_large))


def allocated_bytes(sizes: list[int]) -> int:
    """Bytes counted as allocated after allocating ``sizes`` in order (see :func:`allocate`)."""
    return allocate(sizes).total


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def embedding_rows(shard: Shard, lora: bool) -> int:
    """Rows of the (per-GPU) embedding and LM head: vocabulary padded as vLLM pads it."""
    spec = shard.spec
    if lora and spec.lora_embeddings:
        rows = _pad(spec.vocab_size, LORA_VOCAB_PADDING) + _pad(LORA_EXTRA_VOCAB,
                                                                  LORA_VOCAB_PADDING)
    else:
        rows = _pad(spec.vocab_size, DEFAULT_VOCAB_PADDING)
    return rows // shard.tp


def weight_tensors(shard: Shard, lora: bool) -> list[int]:
    """Byte sizes of the weight tensors on one GPU, in the order vLLM creates them.

    Embedding (and OPT's learned positions), per layer the qkv, o and MLP weights with their
    biases and norms (the first layer's attention also creates the RoPE cos/sin cache,
    ``max_position_embeddings x head_dim`` in the model dtype, shared by all layers), the
    final norm and the (untied) LM head (``vllm/model_executor/models/<arch>.py``).
    """
    s = shard.spec
    b = s.dtype_bytes
    h = s.hidden_size
    emb = embedding_rows(shard, lora) * h * b
    out = [emb]
    if s.learned_positions >= 0:
        out.append((s.max_position_embeddings + s.learned_positions) * h * b)
    qkv = shard.q_size + 2 * shard.kv_size
    i = shard.intermediate
    norm = h * b * (2 if s.norm_bias else 1)
    for layer in range(s.num_layers):
        out.append(qkv * h * b)
        if s.qkv_bias:
            out.append(qkv * b)
        out.append(h * shard.q_size * b)
        if s.linear_bias:
            out.append(h * b)
        if layer == 0 and s.learned_positions < 0:
            out.append(s.max_position_embeddings * s.head_dim * b)
        if s.qk_norm:
            out += [s.head_dim * b] * 2
        if s.gated:
            out += [2 * i * h * b, h * i * b]
        else:
            out += [i * h * b, h * i * b]
            if s.linear_bias:
                out += [i * b, h * b]
        out += [norm] * s.norms
    out.append(norm)
    if not s.tie_word_embeddings:
        out.append(emb)
    return out


def weights_bytes(shard: Shard, lora: bool) -> int:
    """Allocated bytes of the weights on one GPU (caching-allocator rounding included)."""
    return allocated_bytes(weight_tensors(shard, lora))


def lora_slot_tensors(shard: Shard, max_loras: int, rank: int) -> list[int]:
    """Byte sizes of the LoRA slot buffers vLLM 0.8.5 allocates on one GPU.

    Per layer (``vllm/lora/layers.py`` ``create_lora_weights``): qkv A 3 x (n, 1, r, H),
    B (n, 1, q, r) + 2 x (n, 1, kv, r); o A (n, 1, r, q), B (n, 1, H, r); gate_up A 2 x
    (n, 1, r, H), B 2 x (n, 1, I, r) (OPT's fc1: one slice); down A (n, 1, r, I), B
    (n, 1, H, r). For models whose embeddings vLLM wraps: the embedding's extra vocabulary
    (n, 256, H), A (n, V + 256, r), B (n, 1, H, r), and the logits processor's A (n, 1, r, H),
    B (n, 1, pad256(V + 256), r) and extra vocabulary (n, 256, H); the measured Llama-3.1-8B
    loads carry one more (n, 256, H) buffer than these, which is counted too.
    """
    s = shard.spec
    b = s.dtype_bytes
    n, r, h = max_loras, rank, s.hidden_size
    q, kv, i = shard.q_size, shard.kv_size, shard.intermediate
    per_layer = [n * r * h * b] * 3 + [n * q * r * b, n * kv * r * b, n * kv * r * b]
    per_layer += [n * r * q * b, n * h * r * b]
    slices = 2 if s.gated else 1
    per_layer += [n * r * h * b] * slices + [n * i * r * b] * slices
    per_layer += [n * r * i * b, n * h * r * b]
    if not s.lora_embeddings:
        return per_layer * s.num_layers
    vx = s.vocab_size + LORA_EXTRA_VOCAB
    extra = n * LORA_EXTRA_VOCAB * h * b
    embed = [extra, n * vx * r * b, n * h * r * b]
    logits = [n * r * h * b, n * _pad(vx, LORA_VOCAB_PADDING) * r * b, extra, extra]
    return embed + per_layer * s.num_layers + logits


def model_load_bytes(shard: Shard, max_loras: int, rank: int,
                     weights: AllocatorState | None = None) -> int:
    """Allocated bytes of the weights and then the LoRA slot buffers on one GPU.

    ``weights`` is the allocator state after the weights with LoRA (computed if ``None``;
    pass it to price many slot configurations of one model).
    """
    start = weights if weights is not None else allocate(weight_tensors(shard, True))
    return allocate(lora_slot_tensors(shard, max_loras, rank), start).total


def slots_bytes(shard: Shard, max_loras: int, rank: int) -> int:
    """Allocated bytes the LoRA slot buffers add to the weights on one GPU."""
    return model_load_bytes(shard, max_loras, rank) - weights_bytes(shard, True)


class MemoryConstants(BaseModel):
    """Model-independent constants of the profiling pass (fitted; bytes unless noted).

    Attributes
    ----------
    non_torch_gib:
        Memory CUDA holds outside PyTorch, GiB.
    forward_bytes:
        Forward-pass peak per (token x (hidden + intermediate)) of the dummy batch.
    sampler_bytes:
        Sampler peak per (sequence x vocabulary entry).
    lora_bytes:
        Extra forward-pass peak with LoRA per (token x intermediate).
    cuda_graph_gib_per_layer:
        CUDA-graph memory with LoRA per layer, GiB (graphs are captured after the KV cache,
        so this only enters the out-of-memory check, as in the measured profiles).
    """

    model_config = ConfigDict(frozen=True)

    non_torch_gib: float = Field(ge=0)
    forward_bytes: float = Field(ge=0)
    sampler_bytes: float = Field(ge=0)
    lora_bytes: float = Field(ge=0)
    cuda_graph_gib_per_layer: float = Field(ge=0)


def sampler_vocab(shard: Shard, lora: bool) -> int:
    """Columns of the logits the sampler sees (the LoRA logits processor adds 256)."""
    v = shard.spec.vocab_size
    return v + LORA_EXTRA_VOCAB if lora and shard.spec.lora_embeddings else v


def activation_bytes(shard: Shard, c: MemoryConstants, *, lora: bool, max_num_seqs: int,
                     tokens: int = PROFILE_TOKENS) -> float:
    """Peak bytes of the profiling pass above weights and slots, on one GPU (no non-torch).

    ``max(forward, sampler) + lora_extra`` with the fitted constants ``c`` (module
    docstring); vLLM's dummy batch has ``min(tokens, max_num_seqs)`` requests.
    """
    s = shard.spec
    seqs = min(max_num_seqs, tokens)
    fwd = c.forward_bytes * tokens * (s.hidden_size + shard.intermediate)
    samp = c.sampler_bytes * seqs * sampler_vocab(shard, lora)
    extra = c.lora_bytes * tokens * shard.intermediate if lora else 0.0
    return max(fwd, samp) + extra


@dataclass(frozen=True)
class StartupMemory:
    """What :func:`startup_memory` computes for one server configuration.

    Attributes
    ----------
    model_load_gib:
        Weights + LoRA slot buffers, GiB (vLLM logs it as "Model loading took ... GiB").
    available_gib:
        KV cache memory, GiB (negative when nothing is left).
    kv_cache_tokens:
        KV cache size in tokens (0 on a failure).
    failure:
        ``None``, ``cuda_oom``, ``no_memory_for_kv_cache`` or
        ``kv_cache_smaller_than_max_model_len``.
    """

    model_load_gib: float
    available_gib: float
    kv_cache_tokens: int
    failure: str | None


def startup_memory(
    shard: Shard, gpu: GpuSpec, c: MemoryConstants, *, max_loras: int, max_lora_rank: int,
    enable_lora: bool, max_num_seqs: int, gpu_memory_utilization: float, max_model_len: int,
    block_size: int = 16, total_gib: float | None = None,
    weights: AllocatorState | None = None,
) -> StartupMemory:
    """The KV cache vLLM 0.8.5 allocates at start-up, or the failure it reports.

    Parameters
    ----------
    shard:
        The model on one GPU.
    gpu, total_gib:
        The GPU; ``total_gib`` overrides its CUDA-reported memory (GiB).
    c:
        Fitted activation constants.
    max_loras, max_lora_rank, enable_lora, max_num_seqs, gpu_memory_utilization,
    max_model_len, block_size:
        The vLLM flags.
    weights:
        Allocator state after the weights with LoRA (:func:`model_load_bytes`).
    """
    total = (total_gib if total_gib is not None else gpu.memory_total_gib) * GIB
    load = (model_load_bytes(shard, max_loras, max_lora_rank, weights) if enable_lora
            else weights_bytes(shard, False))
    act = activation_bytes(shard, c, lora=enable_lora, max_num_seqs=max_num_seqs)
    non_torch = c.non_torch_gib * GIB
    available = gpu_memory_utilization * total - load - act - non_torch
    bpt = shard.kv_bytes_per_token()
    failure: str | None = None
    if load + act + non_torch > total:
        failure = "cuda_oom"
    elif available <= 0:
        failure = "no_memory_for_kv_cache"
    elif available < max_model_len * bpt:
        failure = "kv_cache_smaller_than_max_model_len"
    tokens = 0
    if failure is None:
        page = block_size * bpt // shard.spec.num_layers
        blocks = int(available // page // shard.spec.num_layers)
        tokens = blocks * block_size
    return StartupMemory(load / GIB, available / GIB, tokens, failure)


def table_max_loras(limit: int = 4096) -> list[int]:
    """The ``max_loras`` grid of a prior's KV table: 1, 2, 4, every 8 to 128, then every 32."""
    return [1, 2, 4, *range(8, 129, 8), *range(160, limit + 1, 32)]


def build_kv_model(
    shard: Shard, gpu: GpuSpec, c: MemoryConstants, *, max_model_len: int,
    gpu_memory_utilization: float = 0.9, total_gib: float | None = None,
) -> KVModel:
    """A :class:`~loratwin.profile.model.KVModel` computed instead of measured.

    Points: every (``max_loras`` of :func:`table_max_loras` until all ranks fail,
    ``max_lora_rank`` in ``TABLE_RANKS``) at ``max_num_seqs`` 2048; rank lines and load lines
    fitted through the points that start (as the measured fit does); the no-LoRA size per
    ``max_num_seqs`` in ``NO_LORA_SEQS``.
    """
    weights = allocate(weight_tensors(shard, True))

    def at(n: int, r: int, lora: bool = True, seqs: int = REFERENCE_MAX_NUM_SEQS
           ) -> StartupMemory:
        return startup_memory(shard, gpu, c, max_loras=n, max_lora_rank=r, enable_lora=lora,
                              max_num_seqs=seqs, gpu_memory_utilization=gpu_memory_utilization,
                              max_model_len=max_model_len, total_gib=total_gib,
                              weights=weights)

    points: list[KVPoint] = []
    rank_lines: dict[int, tuple[float, float]] = {}
    load_lines: dict[int, tuple[float, float]] = {}
    for r in TABLE_RANKS:
        ok_n, ok_tok, load_n, load_g = [], [], [], []
        for n in table_max_loras():
            m = at(n, r)
            points.append(KVPoint(
                max_loras=n, max_lora_rank=r,
                kv_cache_tokens=m.kv_cache_tokens if m.failure is None else None,
                failure=m.failure,
                model_load_gib=round(m.model_load_gib, 4) if m.failure != "cuda_oom" else None,
            ))
            load_n.append(n)
            load_g.append(m.model_load_gib)
            if m.failure is None:
                ok_n.append(n)
                ok_tok.append(m.kv_cache_tokens)
            elif m.failure == "cuda_oom" and len(load_n) >= 3:
                break
        if len(ok_n) < 2:
            # the line of a rank that never starts: through the available memory instead
            ok_n = [1, 2]
            ok_tok = [at(1, r).available_gib * GIB / shard.kv_bytes_per_token(),
                      at(2, r).available_gib * GIB / shard.kv_bytes_per_token()]
        slope, icpt = np.polyfit(np.array(ok_n, float), np.array(ok_tok, float), 1)
        rank_lines[r] = (float(icpt), float(-slope))
        s2, i2 = np.polyfit(np.array(load_n, float), np.array(load_g, float), 1)
        load_lines[r] = (float(i2), float(s2))
    no_lora = {s: at(1, 8, lora=False, seqs=s) for s in NO_LORA_SEQS}
    return KVModel(
        points=tuple(points),
        rank_lines=rank_lines,
        load_lines=load_lines,
        no_lora_by_max_num_seqs={s: m.kv_cache_tokens for s, m in no_lora.items()},
        reference_max_num_seqs=REFERENCE_MAX_NUM_SEQS,
        cuda_graph_gib=round(c.cuda_graph_gib_per_layer * shard.spec.num_layers, 3),
    )


__all__ = [
    "LORA_EXTRA_VOCAB",
    "NO_LORA_SEQS",
    "PROFILE_TOKENS",
    "REFERENCE_MAX_NUM_SEQS",
    "TABLE_RANKS",
    "AllocatorState",
    "MemoryConstants",
    "StartupMemory",
    "activation_bytes",
    "alloc_bytes",
    "allocate",
    "allocated_bytes",
    "build_kv_model",
    "lora_slot_tensors",
    "model_load_bytes",
    "sampler_vocab",
    "slots_bytes",
    "startup_memory",
    "table_max_loras",
    "weight_tensors",
    "weights_bytes",
]
