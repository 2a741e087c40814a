"""The state of one simulated vLLM V1 engine, as flat per-request lists and counters.

vLLM keeps a ``Request`` object per request and the scheduler's ``running`` list and
``waiting`` queue (``vllm/v1/core/sched/scheduler.py``, ``vllm/v1/request.py``). The twin
keeps the same facts as lists indexed by the engine request id ``r`` (the request's
acceptance index) and a few running sums, so that the event loop
(:mod:`loratwin.twin.engine`) never walks all running requests:

* a decoding request advances one token per step, so its progress is implied by the step it
  started decoding at (``decode_step0``, ``decode_computed0``, ``decode_output0``) and its
  finishing step is known at once (``finish_heap``);
* the decoders that need a new KV block in a step are those whose ``num_computed_tokens %
  block_size`` phase matches the step (``phase_count``), and their context tokens are a
  running sum (``decode_context``);
* the waiting queue is one FIFO per adapter plus lazy heaps of the queue heads
  (:mod:`loratwin.twin.waiting`).

The step functions (:mod:`loratwin.twin.engine_steps`, :mod:`loratwin.twin.skip`) read and
write these attributes; in their inner loops they bind them to locals first (attribute
access is slower than a local).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from loratwin.profile.model import KVCapacity, Profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.release import ReleaseRules
from loratwin.twin.trace import StepTrace
from loratwin.twin.vllm_0_8_5.lora_manager import AdapterLoads
from loratwin.workload.types import Requests

# request status (PEND: its last token was sampled in the previous step, whose output is not
# processed yet: asynchronous scheduling only)
WAITING, PREFILL, DECODE, DONE, PEND = range(5)

CHUNK = 1 << 15  # input requests converted to python lists at a time
BLOCK_BITS = 12  # admitted-request bitsets (see waiting.removed_upto): 4096 requests a word
BLOCK_MASK = (1 << BLOCK_BITS) - 1

TIMESERIES_COLUMNS = ("t_s", "dt_s", "steps", "running", "waiting", "kv_used_blocks", "tokens",
                      "adapters")


class EngineState:
    """Everything one simulated engine knows, from start-up to the end of the window.

    Attribute groups (lists are indexed by engine request id unless said otherwise):

    * flags: ``block_size``, ``max_num_batched_tokens``, ``max_num_seqs``, ``enable_lora``,
      ``max_loras`` (huge without LoRA), ``max_cpu_loras``, ``max_model_len``, and the
      release's rules ``admission_blocks`` (scheduler), ``async_scheduling``,
      ``max_loras_counts_pending`` (0.33's count of running requests not scheduled);
    * input requests (numpy, read in chunks) and the acceptance cursor;
    * per request: ``lora`` (adapter index), ``num_prompt_tokens``, ``max_tokens``,
      ``status``, ``num_output_tokens``, ``num_computed_tokens`` and ``num_blocks`` (while
      prefilling), the decode start (``decode_step0``, ``decode_computed0``,
      ``decode_output0``), ``finish_step``, ``block_phase``, ``running_pos``,
      ``num_preemptions``, times in s;
    * ``running`` (vLLM's running list, with lazily removed entries: an entry ``i`` is live
      iff ``running_pos[r] == i``), ``num_running``, ``num_decoding``, ``partial`` (the at
      most one running request with a partial prompt, always last), ``running_per_lora``,
      ``num_scheduled_loras`` / ``scheduled_loras`` (adapters of the scheduled requests),
      ``pending`` (asynchronous scheduling: finished in the previous step);
    * the waiting queue (see :mod:`loratwin.twin.waiting`);
    * KV blocks: ``num_free_blocks`` of ``num_gpu_blocks``;
    * LoRA caches (see :mod:`loratwin.twin.vllm_0_8_5.lora_manager`);
    * client ports, counters, time integrals, the engine time ``t`` (s) and ``step``.
    """

    # flags and release rules
    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    enable_lora: bool
    max_loras: int
    max_cpu_loras: int
    max_model_len: int
    admission_blocks: Callable[[int, int, int], int]
    async_scheduling: bool
    max_loras_counts_pending: bool
    apply_adapters: Callable[..., AdapterLoads]
    num_loras: int
    # step cost (bound methods of the StepCost)
    exec_s: Callable[[int, int, int, int, int], float]
    sched_s: Callable[[int, int], float]
    overlap: bool
    decode_run: Callable[[int, int, int, int, int], tuple[float, float, int]]
    record_run: Callable[[int, int, int, int, int, int], None]
    # input requests
    num_inputs: int
    arrival_np: np.ndarray
    input_np: np.ndarray
    output_np: np.ndarray
    lora_np: np.ndarray
    next_input: int
    next_arrival_s: float
    chunk0: int
    chunk_lora: list[int]
    chunk_in: list[int]
    chunk_out: list[int]
    chunk_arrival: list[float]
    # per request
    capacity: int
    num_accepted: int
    input_index: list[int]
    lora: list[int]
    num_prompt_tokens: list[int]
    max_tokens: list[int]
    status: list[int]
    num_output_tokens: list[int]
    num_computed_tokens: list[int]
    num_blocks: list[int]
    wait_key: list[int]
    decode_step0: list[int]
    decode_computed0: list[int]
    decode_output0: list[int]
    finish_step: list[int]
    block_phase: list[int]
    running_pos: list[int]
    num_preemptions: list[int]
    first_token_s: list[float]
    finish_s: list[float]
    last_token_s: list[float]
    per_request: tuple[tuple[list[Any], Any], ...]
    rejected: list[int]
    # running requests
    running: list[int]
    num_running: int
    num_decoding: int
    decode_context: int
    phase_count: list[int]
    finish_heap: list[tuple[int, int]]
    partial: int
    running_per_lora: list[int]
    num_scheduled_loras: int
    scheduled_loras: set[int]
    pending: list[int]
    pending_only_loras: set[int]
    # waiting requests
    waiting_per_lora: list[deque[int]]
    num_waiting: int
    waiting_heap: list[tuple[int, int]]
    waiting_heap_in_batch: list[tuple[int, int]]
    preempted_keys: list[int]
    next_preempted_key: int
    admitted_count: list[int]
    admitted_bits: list[int]
    heap_limit: int
    # KV cache
    num_free_blocks: int
    num_gpu_blocks: int
    # LoRA caches
    in_gpu: list[bool]
    in_cpu: list[bool]
    hash_rank: list[int]
    last_used: list[int]
    num_in_gpu: int
    num_in_cpu: int
    cpu_load_s: list[float]
    disk_load_s: list[float]
    # client ports
    t_end: float
    max_ports: int
    time_wait_s: float
    inflight: int
    time_wait_q: deque[list[Any]]
    time_wait_n: int
    dropped_ranges: list[tuple[int, int]]
    # counters and integrals
    preemptions: int
    adapter_loads: int
    disk_loads: int
    busy_s: float
    running_integral: float
    waiting_integral: float
    kv_integral: float
    itl_dt: list[float]
    itl_w: list[int]
    resume_gaps: list[float]
    timeseries: dict[str, list[float]] | None
    walked_total: int
    t: float
    step: int
    # tracing (tests)
    trace: list[StepTrace] | None
    tracing: bool
    trace_preempted: list[int]
    trace_finished: list[int]
    # the same objects, grouped as the step functions bind them to locals (one tuple unpack
    # instead of one attribute load each; see the functions for the order)
    arrival_view: tuple[Any, ...]
    waiting_view: tuple[Any, ...]
    finish_view: tuple[Any, ...]
    start_view: tuple[Any, ...]

    __slots__ = tuple(__annotations__)  # the attributes annotated above

    def __init__(self, profile: Profile, server: ServerConfig, rules: ReleaseRules,
                 cap: KVCapacity, cost: StepCost, adapter_ranks: Sequence[int],
                 requests: Requests, client: ClientConfig, *, preload: bool,
                 record_timeseries: bool, trace: list[StepTrace] | None) -> None:
        """Start-up state: empty queues, free KV pool, static adapters loaded (`preload`).

        `server` is already resolved against `profile`; `cap` is its KV capacity (it starts).
        """
        self.block_size = server.block_size
        self.max_num_batched_tokens = server.max_num_batched_tokens
        self.max_num_seqs = server.max_num_seqs
        self.enable_lora = server.enable_lora
        self.max_loras = server.max_loras if server.enable_lora else 1 << 30
        self.max_cpu_loras = server.cpu_loras
        self.max_model_len = server.max_model_len or profile.max_model_len
        self.admission_blocks = rules.scheduler.admission_blocks
        self.async_scheduling = bool(server.async_scheduling)
        self.max_loras_counts_pending = (
            self.async_scheduling and rules.scheduler.max_loras_counts_unscheduled_running)
        self.apply_adapters = rules.lora_manager.apply_adapters
        self.exec_s = cost.exec_s
        self.sched_s = cost.sched_s
        self.overlap = cost.overlap
        self.decode_run = cost.decode_run
        self.record_run = cost.record_run
        self._init_requests(requests)
        self._init_queues(len(adapter_ranks), len(requests))
        self._init_lora(rules, cost, adapter_ranks, preload)
        self.num_free_blocks = max(cap.blocks - rules.kv_cache.reserved_blocks, 0)
        self.num_gpu_blocks = cap.blocks
        self._init_client(client)
        self._init_counters(record_timeseries, trace)
        self._bind_views()

    def _init_requests(self, requests: Requests) -> None:
        """Input arrays and the per-request lists (grown by doubling in ``grow``)."""
        n = len(requests)
        self.num_inputs = n
        self.arrival_np = requests.arrival_s
        self.input_np = requests.input_tokens
        self.output_np = requests.output_tokens
        self.lora_np = requests.adapter
        self.next_input = 0
        self.next_arrival_s = float(requests.arrival_s[0]) if n else math.inf
        self.chunk0 = 0  # python lists of the inputs [chunk0, chunk0 + len)
        self.chunk_lora = []
        self.chunk_in = []
        self.chunk_out = []
        self.chunk_arrival = []
        cap_r = max(16, min(n, 1 << 14))
        self.capacity = cap_r
        self.num_accepted = 0
        nan = math.nan
        self.input_index = [0] * cap_r  # index in `requests`
        self.lora = [0] * cap_r
        self.num_prompt_tokens = [0] * cap_r
        self.max_tokens = [0] * cap_r
        self.status = [WAITING] * cap_r
        self.num_output_tokens = [0] * cap_r
        self.num_computed_tokens = [0] * cap_r  # prefill phase
        self.num_blocks = [0] * cap_r  # prefill phase
        self.wait_key = [0] * cap_r  # acceptance index, or negative for preempted
        self.decode_step0 = [0] * cap_r  # decoders: first decode step
        self.decode_computed0 = [0] * cap_r  # decoders: computed tokens before that step
        self.decode_output0 = [0] * cap_r  # decoders: output tokens before that step
        self.finish_step = [-1] * cap_r
        self.block_phase = [0] * cap_r
        self.running_pos = [-1] * cap_r
        self.num_preemptions = [0] * cap_r
        self.first_token_s = [nan] * cap_r
        self.finish_s = [nan] * cap_r
        self.last_token_s = [nan] * cap_r
        self.per_request = (
            (self.input_index, 0), (self.lora, 0), (self.num_prompt_tokens, 0),
            (self.max_tokens, 0), (self.status, WAITING), (self.num_output_tokens, 0),
            (self.num_computed_tokens, 0), (self.num_blocks, 0), (self.wait_key, 0),
            (self.decode_step0, 0), (self.decode_computed0, 0), (self.decode_output0, 0),
            (self.finish_step, -1), (self.block_phase, 0), (self.running_pos, -1),
            (self.num_preemptions, 0), (self.first_token_s, nan), (self.finish_s, nan),
            (self.last_token_s, nan),
        )
        self.rejected = []  # input indices vLLM refuses (prompt + output > max_model_len)

    def _init_queues(self, n_ad: int, n: int) -> None:
        """Empty running list and waiting queue."""
        self.num_loras = n_ad
        self.heap_limit = 4 * n_ad + 1024  # lazy heaps longer than this are compacted
        self.running = []
        self.num_running = 0
        self.num_decoding = 0
        self.decode_context = 0  # computed tokens of the decoders before the current step
        self.phase_count = [0] * self.block_size  # decoders needing a block at step % bs
        self.finish_heap = []  # (finish step, r), lazily invalidated through finish_step
        self.partial = -1
        self.running_per_lora = [0] * n_ad
        self.num_scheduled_loras = 0
        self.scheduled_loras = set()
        self.pending = []
        self.pending_only_loras = set()  # adapters counted for max_loras only when pending
        self.waiting_per_lora = [deque() for _ in range(n_ad)]
        self.num_waiting = 0
        self.waiting_heap = []  # (wait_key of the head, adapter) of every adapter's queue
        self.waiting_heap_in_batch = []  # the same for adapters with running requests
        self.preempted_keys = []
        self.next_preempted_key = -1
        self.admitted_count = [0] * ((n >> BLOCK_BITS) + 1)
        self.admitted_bits = [0] * ((n >> BLOCK_BITS) + 1)

    def _init_lora(self, rules: ReleaseRules, cost: StepCost, adapter_ranks: Sequence[int],
                   preload: bool) -> None:
        """LoRA caches after start-up (``--lora-modules`` loaded when `preload`).

        GPU slots and the CPU cache are LRU caches touched, every step, by the batch's
        adapters in the hash order of the step's set of LoRARequests (``hash_rank``). An
        adapter's LRU key is (last step it was touched, hash_rank); adapters with running
        requests were touched in the previous step.
        """
        lm = rules.lora_manager
        n_ad = len(adapter_ranks)
        self.in_gpu = [False] * n_ad
        self.in_cpu = [False] * n_ad
        self.hash_rank = lm.lora_hash_order(n_ad)
        self.last_used = [i - n_ad - 1 for i in range(n_ad)]  # start-up loads, in order
        self.num_in_gpu = 0
        self.num_in_cpu = 0
        self.cpu_load_s = [cost.cpu_load_s(r) for r in adapter_ranks]
        self.disk_load_s = [cost.disk_load_s(r) for r in adapter_ranks]
        if self.enable_lora and preload and n_ad:
            in_cpu_start, in_gpu_start = lm.preloaded(n_ad, self.max_cpu_loras, self.max_loras)
            for a in in_cpu_start:
                self.in_cpu[a] = True
            self.num_in_cpu = len(in_cpu_start)
            for a in in_gpu_start:
                self.in_gpu[a] = True
            self.num_in_gpu = len(in_gpu_start)

    def _init_client(self, client: ClientConfig) -> None:
        """Benchmark window and client ports (``max_ports``, TIME_WAIT)."""
        self.t_end = client.duration_s
        self.max_ports = client.max_ports if client.max_ports is not None else 1 << 62
        self.time_wait_s = client.time_wait_s
        self.inflight = 0
        self.time_wait_q = deque()  # [close time s, connections] per step that closed any
        self.time_wait_n = 0
        self.dropped_ranges = []  # input index ranges refused for lack of a client port

    def _init_counters(self, record_timeseries: bool, trace: list[StepTrace] | None) -> None:
        """Zero counters and integrals; time series and trace recording."""
        self.preemptions = 0
        self.adapter_loads = 0
        self.disk_loads = 0
        self.busy_s = 0.0
        self.running_integral = 0.0
        self.waiting_integral = 0.0
        self.kv_integral = 0.0
        self.itl_dt = []
        self.itl_w = []
        self.resume_gaps = []
        self.timeseries = {k: [] for k in TIMESERIES_COLUMNS} if record_timeseries else None
        self.walked_total = 0
        self.t = 0.0
        self.step = 0
        self.trace = trace
        self.tracing = trace is not None
        self.trace_preempted = []
        self.trace_finished = []

    def _bind_views(self) -> None:
        """Group the lists and flags each hot step function works on (they are never
        rebound: ``grow`` extends the per-request lists in place)."""
        self.arrival_view = (
            self.input_index, self.lora, self.num_prompt_tokens, self.max_tokens, self.status,
            self.wait_key, self.waiting_per_lora, self.running_per_lora, self.waiting_heap,
            self.waiting_heap_in_batch, self.rejected, self.arrival_np, self.max_ports,
            self.max_model_len)
        self.waiting_view = (
            self.block_size, self.max_num_seqs, self.max_loras, self.admission_blocks,
            self.num_prompt_tokens, self.num_output_tokens, self.lora, self.wait_key,
            self.status, self.num_computed_tokens, self.num_blocks, self.running_pos,
            self.running, self.waiting_per_lora, self.running_per_lora, self.waiting_heap,
            self.waiting_heap_in_batch, self.preempted_keys, self.admitted_count,
            self.admitted_bits, self.scheduled_loras, self.pending_only_loras)
        self.finish_view = (
            self.finish_heap, self.finish_step, self.block_phase, self.phase_count,
            self.decode_computed0, self.decode_step0, self.num_output_tokens, self.max_tokens,
            self.finish_s, self.lora, self.status, self.num_blocks, self.running_per_lora,
            self.scheduled_loras, self.last_used, self.pending, self.input_index,
            self.block_size, self.async_scheduling)
        self.start_view = (
            self.num_output_tokens, self.max_tokens, self.num_prompt_tokens,
            self.first_token_s, self.status, self.decode_step0, self.decode_computed0,
            self.decode_output0, self.finish_step, self.block_phase, self.phase_count,
            self.finish_heap, self.block_size)

    def grow(self) -> None:
        """Double the per-request lists (they are full)."""
        cap_r = self.capacity
        for lst, default in self.per_request:
            lst.extend([default] * cap_r)
        self.capacity = cap_r * 2

    def running_now(self) -> list[int]:
        """The running requests in vLLM's ``running`` order (tracing only: walks them all)."""
        pos = self.running_pos
        status = self.status
        return [r for i, r in enumerate(self.running)
                if pos[r] == i and status[r] in (PREFILL, DECODE, PEND)]

    def per_input_request(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Scatter the accepted requests' outcomes back to the input requests.

        Returns ``(first_token_s, finish_s, preemptions, dropped)``, each of shape
        ``(num_inputs,)`` (NaN / 0 / False for requests never accepted); ``dropped`` marks
        the requests vLLM refused and those the client had no port for.
        """
        n = self.num_inputs
        k = self.num_accepted
        idx = np.asarray(self.input_index[:k], dtype=np.int64)
        first = np.full(n, np.nan)
        first[idx] = self.first_token_s[:k]
        fin = np.full(n, np.nan)
        fin[idx] = self.finish_s[:k]
        pre = np.zeros(n, np.int32)
        pre[idx] = self.num_preemptions[:k]
        dropped = np.zeros(n, bool)
        dropped[np.asarray(self.rejected, dtype=np.int64)] = True
        for lo, hi in self.dropped_ranges:
            dropped[lo:hi] = True
        return first, fin, pre, dropped
