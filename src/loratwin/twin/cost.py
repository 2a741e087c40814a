"""Engine step cost: how long one vLLM V1 engine step takes, from the step's composition.

The model has three additive parts, each fitted on real measurements (see
:mod:`loratwin.calibrate.fit`):

1. **Execution** of the batch without LoRA (``GPUModelRunner.execute_model``):
   ``base + per_token*M + per_decode_seq*n_decode + per_context_token*ctx
   + per_prefill_req*n_prefill`` with ``M`` the scheduled tokens (padded to the CUDA-graph
   capture size when ``M <= 512``, as ``vllm/v1/worker/gpu_model_runner.py`` does), ``ctx``
   the KV tokens the decoding requests attend to, ``n_prefill`` the requests with a prompt
   chunk in the step.
2. **LoRA kernels**: vLLM 0.8.5 runs every LoRA layer through the Triton kernels of
   ``vllm/lora/ops/triton_ops/lora_shrink.py`` and ``lora_expand.py``, whose grids launch
   thread blocks (CTAs) for every one of the ``max_loras + 1`` slot ids and every
   ``BLOCK_M`` row tile of the whole batch, whether a slot has tokens or not. Blocks of
   empty slots exit at once, blocks of active adapters do the work. The cost is
   ``lora_empty_cta*E + lora_work_cta*(W + f*X) + lora_eager_layer*layers*[M > 512]`` with
   ``E`` the empty blocks launched
   and ``W`` the working blocks, both
   counted from the kernels' grid formulas and the model's layer shapes. This is why the
   step time grows with ``max_loras`` and with the distinct adapters in a batch. Below 128
   tokens the shrink kernel splits K 64 ways: its ``X`` extra working blocks each do 1/8 of a
   regular block's loop and cost the fraction ``f`` of one. Steps of more than 512 tokens run
   outside CUDA graphs and pay the Python-side launch of the LoRA kernels of every layer.
3. **Scheduler CPU time** (``Scheduler.schedule`` in ``vllm/v1/core/sched/scheduler.py``):
   ``sched_base + sched_per_running*running + sched_per_walked*walked`` where ``walked`` is
   the number of waiting requests the admission loop looked at (it walks past every waiting
   request whose adapter would exceed ``max_loras``).

Adapter loads (CPU->GPU and disk->CPU, :meth:`StepCost.cpu_load_s` / ``disk_load_s``) are
added by the engine for the step that needs them.

What differs by vLLM release comes from the release's ``model_runner`` rules
(:class:`~loratwin.twin.release.ModelRunnerRules`): the CUDA-graph sizes (0.32 captures
multiples of 16 above 256, up to ``2 x max_num_seqs``), whether steps without any LoRA request
run the LoRA kernels (not from 0.32, ``cudagraph_specialize_lora``), the slot ids the kernels
launch for (``max_loras + 1``, or with ``--specialize-active-lora`` the active adapters rounded
up to a captured count), and, with asynchronous scheduling, a step taking the longer of the
execution and the scheduler's CPU time instead of their sum. The coefficients were fitted on
vLLM 0.8.5, so the timings of the later releases are estimates. The V0 engine (0.6.3) adds its
engine loop's host CPU time, ``host_step_s`` per step and ``host_per_seq_s`` per scheduled
sequence (:mod:`loratwin.twin.vllm_0_6_3.model_runner`); both are 0 for the V1 releases.
Without chunked prefill (V0 only) the prompts a step admits run in a step of their own before
the decodes: such a step costs ``base(prompt tokens) + base(decodes) - base(all)`` more, one
more fixed step cost and weight read.

On vLLM's CPU backend (``Profile.device == "cpu"``) the model runs eagerly (no CUDA-graph
padding) and LoRA goes through the PyTorch ops of ``vllm/lora/punica_wrapper/punica_cpu.py``
(``vllm/lora/ops/torch_ops``): every token gathers its adapter's stacked ``max_lora_rank``
x dim weights and multiplies them (``bgmv``), a cost per token and slot rank that does not
depend on ``max_loras`` or on the distinct adapters, plus a fixed cost per step. Those two
terms (``lora_step_s``, ``lora_token_rank_s``, zero in the CUDA profiles) take the place of
the Triton thread-block terms.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

from loratwin.profile.model import Architecture, Profile, ceil_div, cpu_load_s, disk_load_s
from loratwin.twin.config import ServerConfig
from loratwin.twin.release import ModelRunnerRules, release_rules

#: CUDA-graph capture sizes of vLLM 0.8.5 (``vllm/config.py``): 1, 2, 4, then every 8 to 512.
CUDA_GRAPH_SIZES: tuple[int, ...] = (1, 2, 4, *range(8, 513, 8))
MAX_CUDA_GRAPH_SIZE = CUDA_GRAPH_SIZES[-1]

# Triton launch configurations of vLLM 0.8.5's LoRA kernels.
SHRINK_BLOCK_M = 32  # lora_shrink.py: BLOCK_M = 32
SHRINK_BLOCK_N = 16  # lora_shrink.py: BLOCK_N = 16 (the rank axis)
SHRINK_SPLIT_K_SMALL = 64  # lora_shrink.py: SPLIT_K = 64 if M < 128 else 8
SHRINK_SPLIT_K_LARGE = 8
SHRINK_SPLIT_K_THRESHOLD = 128
EXPAND_BLOCK_M = 64  # lora_expand.py: BLOCK_M = 64
EXPAND_BLOCK_N = 128  # lora_expand.py: BLOCK_N = 128


def padded_tokens(num_tokens: int, sizes: tuple[int, ...] | None = None) -> int:
    """Token count the model runs on: the smallest CUDA-graph size >= ``num_tokens``, or
    ``num_tokens`` itself above the largest (eager). ``sizes`` default to vLLM 0.8.5's; an
    empty tuple means no CUDA graphs (vLLM's CPU backend), so no padding."""
    if num_tokens <= 0:
        return 0
    if sizes is None:
        if num_tokens > MAX_CUDA_GRAPH_SIZE:
            return num_tokens
        if num_tokens <= 4:
            return 1 if num_tokens == 1 else (2 if num_tokens == 2 else 4)
        return ceil_div(num_tokens, 8) * 8
    if not sizes or num_tokens > sizes[-1]:
        return num_tokens
    return sizes[bisect_left(sizes, num_tokens)]


def graph_sizes(profile: Profile, runner: ModelRunnerRules, max_num_seqs: int,
                max_num_batched_tokens: int) -> tuple[int, ...]:
    """Token counts with a captured CUDA graph: the release's (``runner``) on CUDA, none on
    vLLM's CPU backend (``cudagraph_mode NONE``, ``vllm/platforms/cpu.py``)."""
    if profile.device == "cpu":
        return ()
    return runner.cudagraph_sizes(max_num_seqs, max_num_batched_tokens)


@dataclass(frozen=True)
class LoraShapes:
    """Per-layer grid constants of the LoRA kernels for one model.

    Attributes
    ----------
    shrink_slices:
        Slices over all LoRA modules of a layer (qkv: 3, o: 1, gate_up: 2, down: 1).
    expand_grid_n:
        Sum over modules of ``slices * cdiv(max slice output, 128)`` (grid axis 0, N part).
    expand_work_n:
        Sum over all slices of ``cdiv(slice output, 128)`` (blocks that do not exit on N).
    layers:
        Number of transformer layers.
    """

    shrink_slices: int
    expand_grid_n: int
    expand_work_n: int
    layers: int

    @staticmethod
    def of(arch: Architecture) -> LoraShapes:
        """Shapes of the Llama/Qwen2 LoRA modules (qkv_proj, o_proj, gate_up_proj, down_proj)."""
        bn = EXPAND_BLOCK_N
        modules = (
            (arch.q_size, arch.kv_size, arch.kv_size),  # qkv_proj
            (arch.hidden_size,),  # o_proj
            (arch.intermediate_size, arch.intermediate_size),  # gate_up_proj
            (arch.hidden_size,),  # down_proj
        )
        shrink_slices = sum(len(m) for m in modules)
        grid_n = sum(len(m) * ceil_div(max(m), bn) for m in modules)
        work_n = sum(ceil_div(n, bn) for m in modules for n in m)
        return LoraShapes(shrink_slices, grid_n, work_n, arch.num_layers)


def _split_k(m: int) -> int:
    return SHRINK_SPLIT_K_SMALL if m < SHRINK_SPLIT_K_THRESHOLD else SHRINK_SPLIT_K_LARGE


def launched_ctas_per_slot(
    shapes: LoraShapes, num_tokens: int, max_lora_rank: int,
    sizes: tuple[int, ...] | None = None,
) -> int:
    """LoRA thread blocks launched per slot id and per layer for a step of ``num_tokens``
    (``sizes``: the CUDA-graph sizes, default 0.8.5's)."""
    if num_tokens <= 0:
        return 0
    m_pad = padded_tokens(num_tokens, sizes)
    rank_tiles = ceil_div(max_lora_rank, SHRINK_BLOCK_N)
    return (
        _split_k(m_pad) * ceil_div(m_pad, SHRINK_BLOCK_M) * rank_tiles * shapes.shrink_slices
        + ceil_div(m_pad, EXPAND_BLOCK_M) * shapes.expand_grid_n
    )


def lora_cta_counts(
    shapes: LoraShapes, num_tokens: int, n_adapters: int, max_loras: int, max_lora_rank: int,
    sizes: tuple[int, ...] | None = None,
) -> tuple[float, float, float]:
    """Empty and working LoRA thread blocks of one step, summed over all layers.

    Parameters
    ----------
    num_tokens:
        Tokens in the step (M, before CUDA-graph padding).
    n_adapters:
        Distinct adapters among the step's requests.
    max_loras, max_lora_rank:
        Slot count and slot rank (the kernels' grid and N dimension).
    sizes:
        CUDA-graph sizes (default vLLM 0.8.5's).

    Returns
    -------
    (empty, work, split_extra):
        ``empty`` = launched blocks that exit without work; ``work`` = working blocks as if
        the shrink kernel always split K 8 ways; ``split_extra`` = the additional working
        shrink blocks of the 64-way split used below 128 tokens (each does 1/8 of the K
        loop of a regular block). The per-adapter row tiles ``sum_a cdiv(m_a, BLOCK_M)``
        are estimated as ``n_a + (M - n_a) / BLOCK_M``.
    """
    if num_tokens <= 0:
        return 0.0, 0.0, 0.0
    m_pad = padded_tokens(num_tokens, sizes)
    rank_tiles = ceil_div(max_lora_rank, SHRINK_BLOCK_N)
    split_k = _split_k(m_pad)
    launched = (max_loras + 1) * launched_ctas_per_slot(shapes, num_tokens, max_lora_rank, sizes)
    na = max(min(n_adapters, num_tokens), 0)
    tiles32 = na + (num_tokens - na) / SHRINK_BLOCK_M
    tiles64 = na + (num_tokens - na) / EXPAND_BLOCK_M
    shrink_tiles = rank_tiles * shapes.shrink_slices * tiles32
    work = SHRINK_SPLIT_K_LARGE * shrink_tiles + shapes.expand_work_n * tiles64
    extra = (split_k - SHRINK_SPLIT_K_LARGE) * shrink_tiles
    layers = shapes.layers
    return layers * (launched - work - extra), layers * work, layers * extra


@dataclass(frozen=True)
class StepFeatures:
    """The composition of one engine step, as the cost model sees it."""

    num_tokens: int
    n_decode: int
    n_prefill: int
    context_tokens: int
    n_adapters: int
    n_running: int
    walked: int


class StepCost:
    """Step-time model of one (profile, server config) pair, with per-M lookup tables.

    ``exec_s(...)`` and ``sched_s(...)`` are O(1) and called once per simulated step; the
    engine adds them, or with asynchronous scheduling takes the larger (:attr:`overlap`).
    The server is resolved against the profile (release and defaults) first.
    """

    def __init__(self, profile: Profile, server: ServerConfig) -> None:
        server = server.resolved(profile)
        runner = release_rules(server.vllm_version).model_runner
        c = profile.step
        budget = server.max_num_batched_tokens
        shapes = LoraShapes.of(profile.arch)
        rank_tiles = ceil_div(server.max_lora_rank, SHRINK_BLOCK_N)
        sizes = graph_sizes(profile, runner, server.max_num_seqs, budget)
        max_graph = sizes[-1] if sizes else 0
        base: list[float] = []
        k32: list[float] = []
        per_slot: list[float] = []
        for m in range(budget + 1):
            mp = padded_tokens(m, sizes)
            t = c.base_s + runner.host_step_s + c.per_token_s * mp if m > 0 else 0.0
            if server.enable_lora and m > 0:
                launched_per_slot = launched_ctas_per_slot(shapes, m, server.max_lora_rank, sizes)
                per_slot.append(c.lora_empty_cta_s * shapes.layers * launched_per_slot)
                t += c.lora_empty_cta_s * shapes.layers * (
                    (server.max_loras + 1) * launched_per_slot
                )
                if mp > max_graph:
                    t += c.lora_eager_layer_s * shapes.layers
                # PyTorch LoRA ops (CPU punica wrapper): per step, and per token x slot rank
                t += c.lora_step_s + c.lora_token_rank_s * m * server.max_lora_rank
                # working tiles move blocks from "empty" to "work": SPLIT_K(M) blocks per
                # shrink tile and one per expand tile; blocks beyond the 8-way split cost
                # the fraction split_k_fixed_fraction of a regular working block
                split_k = _split_k(mp)
                work_weight = SHRINK_SPLIT_K_LARGE + c.split_k_fixed_fraction * (
                    split_k - SHRINK_SPLIT_K_LARGE
                )
                k32.append(
                    shapes.layers * rank_tiles * shapes.shrink_slices
                    * (c.lora_work_cta_s * work_weight - c.lora_empty_cta_s * split_k)
                )
            else:
                k32.append(0.0)
                per_slot.append(0.0)
            base.append(t)
        self._base = base
        self._k32 = k32
        self._k64 = (
            shapes.layers * shapes.expand_work_n * (c.lora_work_cta_s - c.lora_empty_cta_s)
            if server.enable_lora else 0.0
        )
        self._lora = server.enable_lora
        # steps without a LoRA request skip the kernels (0.32: cudagraph_specialize_lora)
        self._lora_free_steps = not runner.lora_kernels_without_lora
        # --specialize-active-lora: grids over the active adapters, rounded up to a capture
        self._slot_counts: tuple[int, ...] = ()
        if server.specialize_active_lora and server.enable_lora:
            self._slot_counts = tuple(
                n for n in range(1, server.max_loras + 2)
                if (n & (n - 1)) == 0 or n == server.max_loras + 1
            )
        self._per_slot = per_slot
        self._slots = server.max_loras + 1
        #: V0 without chunked prefill: a step's prompts and decodes run as two steps.
        self._split_prefill = server.enable_chunked_prefill is False
        #: Asynchronous scheduling: the scheduler's CPU time overlaps the execution.
        self.overlap = bool(server.async_scheduling)
        self._profile = profile
        self._max_lora_rank = server.max_lora_rank
        self._sizes = sizes
        # V0 engine (0.6.3): host CPU time per step (in ``base``) and per sequence
        self._dec = c.per_decode_seq_s + runner.host_per_seq_s
        self._ctx = c.per_context_token_s
        self._pref = c.per_prefill_req_s + runner.host_per_seq_s
        self._s0 = c.sched_base_s
        self._srun = c.sched_per_running_s
        self._swalk = c.sched_per_walked_s

    def exec_s(
        self, num_tokens: int, n_decode: int, n_prefill: int, context_tokens: int, n_adapters: int
    ) -> float:
        """Execution time of one step in s (model forward + LoRA kernels, no loads)."""
        return self._exec(num_tokens, n_decode, n_prefill, context_tokens, n_adapters)

    def decode_run(
        self, n_decode: int, context_tokens: int, n_adapters: int, n_running: int, walked: int
    ) -> tuple[float, float, int]:
        """``(a, b, k)``: step j < k of a run of identical decode steps takes a + b*j seconds.

        The context grows by ``n_decode`` tokens per step; everything else is constant. ``k``
        bounds the run where the formula holds (with :attr:`overlap`, while the scheduler's
        CPU time is the longer part); it is ``2**62`` otherwise.
        """
        a = self._exec(n_decode, n_decode, 0, context_tokens, n_adapters)
        b = self._ctx * n_decode
        sched = self.sched_s(n_running, walked)
        if not self.overlap:
            return a + sched, b, 1 << 62
        if a >= sched:
            return a, b, 1 << 62
        if b <= 0:
            return sched, 0.0, 1 << 62
        return sched, 0.0, max(math.ceil((sched - a) / b), 1)

    def record_run(
        self, k: int, n_decode: int, context_tokens: int, n_adapters: int, n_running: int,
        walked: int,
    ) -> None:
        """Hook called once per applied run of ``k`` identical decode steps (no-op here)."""

    def cpu_load_s(self, adapter_rank: int) -> float:
        """CPU->GPU load of an adapter into a slot, s (``profile.model.cpu_load_s``)."""
        return cpu_load_s(self._profile, self._max_lora_rank, adapter_rank)

    def disk_load_s(self, adapter_rank: int) -> float:
        """Disk->CPU load of an adapter, s (``profile.model.disk_load_s``)."""
        return disk_load_s(self._profile, adapter_rank)

    def _exec(
        self, num_tokens: int, n_decode: int, n_prefill: int, context_tokens: int, n_adapters: int
    ) -> float:
        t = (
            self._base[num_tokens]
            + self._dec * n_decode
            + self._ctx * context_tokens
            + self._pref * n_prefill
        )
        if self._split_prefill and n_prefill and n_decode:
            # V0 without chunked prefill: the prompts and the decodes are two steps
            t += self._base[num_tokens - n_decode] + self._base[n_decode] - self._base[num_tokens]
        if self._lora and num_tokens > 0:
            if n_adapters <= 0 and self._lora_free_steps:
                return t - self._per_slot[num_tokens] * self._slots
            na = n_adapters if n_adapters < num_tokens else num_tokens
            t += self._k32[num_tokens] * (na + (num_tokens - na) / SHRINK_BLOCK_M)
            t += self._k64 * (na + (num_tokens - na) / EXPAND_BLOCK_M)
            if self._slot_counts:
                launched = self._slot_counts[bisect_left(self._slot_counts, max(na, 1))]
                t += self._per_slot[num_tokens] * (launched - self._slots)
        return t

    def sched_s(self, n_running: int, walked: int) -> float:
        """Scheduler CPU time of one step in s."""
        return self._s0 + self._srun * n_running + self._swalk * walked

    def step_s(self, f: StepFeatures) -> float:
        """Execution plus scheduler time of one step, in s (convenience for tests)."""
        e = self.exec_s(f.num_tokens, f.n_decode, f.n_prefill, f.context_tokens, f.n_adapters)
        sc = self.sched_s(f.n_running, f.walked)
        return max(e, sc) if self.overlap else e + sc


FEATURE_NAMES: tuple[str, ...] = (
    "steps",
    "tokens",
    "decode_seqs",
    "context_tokens",
    "prefill_reqs",
    "lora_empty_ctas",
    "lora_work_ctas",
    "lora_split_extra",
    "lora_eager_layers",
    "sched_steps",
    "sched_running",
    "sched_walked",
    "lora_steps",
    "lora_token_rank",
)
"""Order of the summed step features, matching the fields of ``StepCoefficients``."""


class RecordingStepCost(StepCost):
    """A :class:`StepCost` that also sums the step features of every step it prices.

    Used by the profile fitter: for a closed (all-at-once) benchmark the schedule does not
    depend on the step durations, so the run's total time is ``coefficients . sums``. The
    sums are those of a synchronous engine (execution plus scheduler time), which is how the
    calibration runs (vLLM 0.8.5) were served.
    """

    def __init__(self, profile: Profile, server: ServerConfig) -> None:
        super().__init__(profile, server)
        self.sums = dict.fromkeys(FEATURE_NAMES, 0.0)
        self._shapes = LoraShapes.of(profile.arch)
        self._server = server.resolved(profile)

    def _add(self, k: float, m: int, n_decode: int, n_prefill: int, ctx: float,
             n_adapters: int) -> None:
        s = self.sums
        s["steps"] += k
        s["tokens"] += k * padded_tokens(m, self._sizes)
        s["decode_seqs"] += k * n_decode
        s["context_tokens"] += ctx
        s["prefill_reqs"] += k * n_prefill
        if self._server.enable_lora and m > 0:
            empty, work, extra = lora_cta_counts(
                self._shapes, m, n_adapters, self._server.max_loras, self._server.max_lora_rank,
                self._sizes,
            )
            s["lora_empty_ctas"] += k * empty
            s["lora_work_ctas"] += k * work
            s["lora_split_extra"] += k * extra
            if padded_tokens(m, self._sizes) > (self._sizes[-1] if self._sizes else 0):
                s["lora_eager_layers"] += k * self._shapes.layers
            s["lora_steps"] += k
            s["lora_token_rank"] += k * m * self._server.max_lora_rank

    def exec_s(
        self, num_tokens: int, n_decode: int, n_prefill: int, context_tokens: int, n_adapters: int
    ) -> float:
        self._add(1, num_tokens, n_decode, n_prefill, context_tokens, n_adapters)
        return super().exec_s(num_tokens, n_decode, n_prefill, context_tokens, n_adapters)

    def sched_s(self, n_running: int, walked: int) -> float:
        s = self.sums
        s["sched_steps"] += 1
        s["sched_running"] += n_running
        s["sched_walked"] += walked
        return super().sched_s(n_running, walked)

    def record_run(
        self, k: int, n_decode: int, context_tokens: int, n_adapters: int, n_running: int,
        walked: int,
    ) -> None:
        ctx = k * context_tokens + n_decode * k * (k - 1) / 2
        self._add(k, n_decode, n_decode, 0, ctx, n_adapters)
        s = self.sums
        s["sched_steps"] += k
        s["sched_running"] += k * n_running
        s["sched_walked"] += k * walked
