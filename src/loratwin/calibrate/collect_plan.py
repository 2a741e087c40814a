"""The calibration campaign of ``loratwin profile collect``: which servers, which points.

A campaign is a list of :class:`ServerSpec` (the vLLM flags loratwin starts a server with)
and, for each, the :class:`SweepPoint` s measured on it, in the order of the files of
``../shared/data/profiles/<model>/`` that ``loratwin profile fit`` reads:

``decode`` / ``prefill`` (``decode_sweep.csv``, ``prefill_sweep.csv``)
    Closed bursts without LoRA: ``batch`` requests of 1 prompt token and ``output`` tokens
    (step time against decoding sequences), or of ``input`` prompt tokens and 1 output token
    (step time against prefill tokens; enough requests to fill many token budgets).
``lora`` (``lora_overhead_sweep.csv``)
    Closed decode bursts and prefill bursts with LoRA, the requests spread over ``adapters``
    distinct adapters: the LoRA cost against the distinct adapters per step, and (across the
    servers) against ``max_lora_rank``; a burst over more adapters than ``max_loras`` also
    exercises the scheduler's skip loop and the adapter swaps.
``loading`` (``adapter_loading.csv``, ``ttft_idle.csv``)
    Sequential single requests: to one adapter in a slot (idle TTFT), cycling over
    ``max_loras + 1`` adapters held in the CPU cache (one CPU->slot load per request) and over
    ``max_cpu_loras + 1`` adapters (one disk load per request).
``kv`` (``kv_capacity.csv``)
    The KV cache blocks the server reports at start-up, or the memory error it fails with.
``frontend`` (``frontend_rate.csv``)
    A burst of 1-token requests with 1 output token: the engine needs a few steps for all of
    them, so the burst lasts as long as the API server takes to hand them over one by one
    (:mod:`loratwin.twin.frontend`).

Every server also gets one decode burst of ``max_num_seqs`` sequences (``decode-bmax``; with
LoRA, ``lora-bmax`` over ``max_loras`` adapters): a serving run beyond saturation runs that
many sequences per step, and step costs fitted on small batches only would be extrapolated
there (issue 10: a quick campaign with decode batches up to 32 once fitted a per-decode-sequence
cost of 0; docs/live.md).

Against a running server (``--url``) only that server's points exist (no restarts): the
no-LoRA sweeps become LoRA sweeps over one adapter. Point ids are stable, so a campaign
resumed with the same plan never measures a finished point again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: Sweep kinds and the CSV each one is written to.
SWEEP_FILES: dict[str, str] = {
    "decode": "decode_sweep.csv",
    "prefill": "prefill_sweep.csv",
    "lora": "lora_overhead_sweep.csv",
    "loading": "adapter_loading.csv",
    "kv": "kv_capacity.csv",
    "frontend": "frontend_rate.csv",
}


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration of the campaign.

    ``enable_lora=False`` is the no-LoRA server; otherwise ``max_loras``, ``max_cpu_loras``,
    ``max_lora_rank`` and the adapter ranks it registers (``adapter_ranks``; names are
    ``c0, c1, ...`` unless ``names`` gives them). ``existing`` marks the running server of
    ``--url`` (nothing started).
    """

    key: str
    enable_lora: bool
    max_loras: int = 0
    max_cpu_loras: int = 0
    max_lora_rank: int = 0
    adapter_ranks: tuple[int, ...] = ()
    existing: bool = False
    names: tuple[str, ...] = ()

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """The adapters' ``model`` names: the running server's own, or ``c0, c1, ...``."""
        return self.names or tuple(f"c{i}" for i in range(len(self.adapter_ranks)))


#: ``SweepPoint.batch`` of a burst of the server's ``max_num_seqs`` sequences (resolved when the
#: point runs, once the server's ``max_num_seqs`` is known).
FULL_BATCH = -1


@dataclass(frozen=True)
class SweepPoint:
    """One measurement: ``sweep`` kind (see the module docstring) on server ``server``.

    ``batch`` concurrent requests of ``input`` prompt tokens and ``output`` output tokens
    over ``adapters`` distinct adapters (0: the base model) of rank ``adapter_rank``. Sizes
    set to 0 are chosen when the point runs (from the server's measured step time, so that
    the burst lasts the campaign's target seconds); ``batch`` :data:`FULL_BATCH` is the
    server's ``max_num_seqs``.
    """

    point_id: str
    sweep: str
    server: str
    batch: int = 0
    input: int = 0
    output: int = 0
    adapters: int = 0
    adapter_rank: int = 0


@dataclass(frozen=True)
class CampaignPlan:
    """Servers in measurement order and the points of each."""

    servers: tuple[ServerSpec, ...]
    points: tuple[SweepPoint, ...] = field(default=())

    def points_of(self, key: str) -> list[SweepPoint]:
        return [p for p in self.points if p.server == key]


@dataclass(frozen=True)
class PlanOptions:
    """Sizes of a plan.

    Attributes
    ----------
    decode_batches:
        Concurrent sequences of the decode bursts.
    prefill_inputs:
        Prompt lengths of the prefill bursts (tokens).
    lora_batch:
        Concurrent sequences of the LoRA bursts.
    max_loras_grid:
        ``max_loras`` of the LoRA servers (with ``--launch``).
    kv_grid:
        Extra (``max_loras``, ``max_lora_rank``) start-ups for the KV table.
    quick:
        The reduced plan of the CI (fewer points).
    """

    decode_batches: tuple[int, ...] = (1, 4, 16, 64)
    prefill_inputs: tuple[int, ...] = (128, 256, 512, 1024)
    lora_batch: int = 16
    max_loras_grid: tuple[int, ...] = (4, 1)
    kv_grid: tuple[tuple[int, int], ...] = ((16, 0), (16, -1))
    quick: bool = False


def _lora_points(server: ServerSpec, opts: PlanOptions, decode_k1: bool) -> list[SweepPoint]:
    """LoRA bursts over 1, 2, ``max_loras`` and ``2 x max_loras`` adapters, a prefill burst
    with LoRA, the loading probes and the KV row of one LoRA server."""
    key = server.key
    rank = server.adapter_ranks[0]
    pts: list[SweepPoint] = []
    if decode_k1:  # --url: the only server, so its single-adapter sweeps replace the no-LoRA ones
        pts += [SweepPoint(f"{key}/decode-b{b}", "lora", key, batch=b, input=1, adapters=1,
                           adapter_rank=rank) for b in opts.decode_batches]
        pts.append(SweepPoint(f"{key}/decode-bmax", "lora", key, batch=FULL_BATCH, input=1,
                              adapters=1, adapter_rank=rank))
        pts += [SweepPoint(f"{key}/prefill-p{p}", "lora", key, input=p, output=1, adapters=1,
                           adapter_rank=rank) for p in opts.prefill_inputs]
    ks = sorted({1, 2, server.max_loras, 2 * server.max_loras} - ({1} if decode_k1 else set()))
    if opts.quick:
        ks = sorted({server.max_loras, 2 * server.max_loras})
    n = len(server.adapter_ranks)
    pts += [SweepPoint(f"{key}/lora-k{k}", "lora", key, batch=max(opts.lora_batch, k),
                       input=1, adapters=min(k, n), adapter_rank=rank) for k in ks]
    pts.append(SweepPoint(f"{key}/lora-bmax", "lora", key, batch=FULL_BATCH, input=1,
                          adapters=min(server.max_loras, n), adapter_rank=rank))
    if not decode_k1:
        pts.append(SweepPoint(f"{key}/lora-prefill", "lora", key, input=opts.prefill_inputs[-1],
                              output=1, adapters=min(server.max_loras, n), adapter_rank=rank))
    pts.append(SweepPoint(f"{key}/loading", "loading", key))
    pts.append(SweepPoint(f"{key}/frontend", "frontend", key, input=1, output=1))
    pts.append(SweepPoint(f"{key}/kv", "kv", key))
    return pts


def url_plan(server: ServerSpec, opts: PlanOptions) -> CampaignPlan:
    """The points measurable on one running LoRA server (``--url``)."""
    return CampaignPlan((server,), tuple(_lora_points(server, opts, decode_k1=True)))


def slot_ranks(adapter_ranks: Sequence[int]) -> tuple[int, int]:
    """(large, small) ``max_lora_rank`` of the two kinds of LoRA server: the largest and the
    smallest adapter rank, or twice and once the rank when all adapters share one."""
    ranks = sorted(set(adapter_ranks))
    if not ranks:
        raise ValueError("no adapter ranks")
    return (ranks[-1], ranks[0]) if len(ranks) > 1 else (2 * ranks[0], ranks[0])


def lora_server(key: str, max_loras: int, max_lora_rank: int, adapter_ranks: Sequence[int],
                n_adapters: int) -> ServerSpec:
    """A LoRA server with ``n_adapters`` names (at least ``max_loras + 2``) of the largest
    available rank <= ``max_lora_rank``, and ``max_cpu_loras`` one below the count, so that
    cycling over all of them misses the CPU cache and cycling over ``max_loras + 1`` does not.
    """
    fitting = [r for r in adapter_ranks if r <= max_lora_rank]
    rank = max(fitting) if fitting else min(adapter_ranks)
    n = max(n_adapters, max_loras + 2)
    return ServerSpec(key, True, max_loras, n - 1, max_lora_rank, (rank,) * n)


def launch_plan(adapter_ranks: Sequence[int], opts: PlanOptions, n_adapters: int = 8
                ) -> CampaignPlan:
    """Servers and points of a ``--launch`` campaign.

    1. the no-LoRA server: decode and prefill sweeps, KV size without LoRA;
    2. one LoRA server per ``max_loras`` of ``opts.max_loras_grid``, the slot rank
       alternating between the two of :func:`slot_ranks`: LoRA overhead, loading, KV;
    3. start-ups for the extra KV points (``opts.kv_grid``: ``max_lora_rank`` 0 = the small
       slot rank, -1 = the large one).
    """
    large, small = slot_ranks(adapter_ranks)
    points = [SweepPoint(f"nolora/decode-b{b}", "decode", "nolora", batch=b, input=1)
              for b in opts.decode_batches]
    points.append(SweepPoint("nolora/decode-bmax", "decode", "nolora", batch=FULL_BATCH,
                             input=1))
    points += [SweepPoint(f"nolora/prefill-p{p}", "prefill", "nolora", input=p, output=1)
               for p in opts.prefill_inputs]
    points.append(SweepPoint("nolora/frontend", "frontend", "nolora", input=1, output=1))
    points.append(SweepPoint("nolora/kv", "kv", "nolora"))
    servers = [ServerSpec("nolora", enable_lora=False)]
    for i, loras in enumerate(opts.max_loras_grid):
        rank = large if i % 2 == 0 else small
        spec = lora_server(f"lora-{loras}-r{rank}", loras, rank, adapter_ranks, n_adapters)
        servers.append(spec)
        points += _lora_points(spec, opts, decode_k1=False)
    if not opts.quick:
        for loras, which in opts.kv_grid:
            rank = small if which == 0 else large
            spec = lora_server(f"kv-{loras}-r{rank}", loras, rank, adapter_ranks, 1)
            if all(s.key != spec.key for s in servers):
                servers.append(spec)
                points.append(SweepPoint(f"{spec.key}/kv", "kv", spec.key))
    return CampaignPlan(tuple(servers), tuple(points))
