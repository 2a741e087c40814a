"""The vLLM releases the twin knows, and the shape of the rules each one contributes.

Every supported release has a package ``loratwin.twin.vllm_<x>_<y>[_<z>]`` with one module per
vLLM component, named as vLLM names it (``scheduler``, ``kv_cache_manager``, ``lora_manager``,
``engine_args``, ``model_runner``); its ``RULES`` object (a :class:`ReleaseRules`) is what the
event loop (:mod:`loratwin.twin.engine`) and the step-cost model (:mod:`loratwin.twin.cost`)
read (the engine's steps: :mod:`loratwin.twin.engine_steps`). The per-release table with
the vLLM file behind each rule is ``docs/twin-versions.md``.

Release names are vLLM's: ``0.6.3`` (the V0 engine; ``0.6.3.post1`` is read as it) and ``0.8.5``
are releases; ``0.32`` and ``0.33`` are release lines
(``0.32.0``, ``0.32.1``, ... all map to ``0.32``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from loratwin.errors import ConfigError

#: Release names in release order, and the package holding each one's rules.
KNOWN_VERSIONS: tuple[str, ...] = ("0.6.3", "0.8.5", "0.32", "0.33")
_PACKAGES = {"0.6.3": "vllm_0_6_3", "0.8.5": "vllm_0_8_5", "0.32": "vllm_0_32",
             "0.33": "vllm_0_33"}
#: The release of today's bundled profiles (and of a ``Profile`` that does not say).
DEFAULT_VERSION = "0.8.5"


@dataclass(frozen=True)
class SchedulerRules:
    """What ``Scheduler.schedule()`` / ``update_from_output()`` do that differs by release.

    Attributes
    ----------
    max_loras_counts_unscheduled_running:
        ``scheduled_loras`` (the adapters counted against ``max_loras`` before the waiting
        queue is walked) holds the adapters of *all* running requests, not only of those
        scheduled in this step.
    reserve_full_sequence:
        A waiting request is admitted only if blocks for its whole sequence (prompt plus the
        tokens generated before a preemption) are free (``scheduler_reserve_full_isl``), not
        only blocks for its first chunk.
    async_scheduling_default:
        Asynchronous scheduling is on unless ``--no-async-scheduling``: step n+1 is scheduled
        before the output of step n is processed.
    async_scheduling_supported:
        The release has asynchronous scheduling at all.
    admission_blocks:
        ``(num_tokens, num_new_tokens, block_size) -> blocks``: free blocks a waiting request
        needs to be admitted with ``num_new_tokens`` of its ``num_tokens`` in this step.
    chunked_prefill_default:
        ``--enable-chunked-prefill`` is on unless given (V1: always on).
    chunked_prefill_optional:
        The release can run without chunked prefill (V0): prompts then run in steps of their
        own, and decoding requests wait for them.
    """

    max_loras_counts_unscheduled_running: bool
    reserve_full_sequence: bool
    async_scheduling_default: bool
    async_scheduling_supported: bool
    admission_blocks: Callable[[int, int, int], int]
    chunked_prefill_default: bool = True
    chunked_prefill_optional: bool = False


@dataclass(frozen=True)
class KVCacheRules:
    """Block accounting of ``KVCacheManager`` / ``BlockPool``.

    Attributes
    ----------
    reserved_blocks:
        Blocks of the pool never handed to a request (the ``null_block``); the KV cache size
        vLLM logs at start-up counts them.
    """

    reserved_blocks: int


@dataclass(frozen=True)
class EngineDefaults:
    """Defaults of ``vllm serve`` flags (``EngineArgs`` and the config classes).

    Attributes
    ----------
    gpu_memory_utilization:
        ``--gpu-memory-utilization`` default.
    batch_defaults:
        ``(gpu total memory in GiB, GPU name) -> (max_num_batched_tokens, max_num_seqs)`` of
        the OpenAI-compatible server.
    max_num_seqs_capped_by_batched_tokens:
        A defaulted ``max_num_seqs`` is lowered to ``max_num_batched_tokens`` when that is
        smaller (otherwise vLLM refuses the pair).
    max_lora_ranks:
        The values ``--max-lora-rank`` accepts, ascending (``LoRAConfig``); vLLM refuses
        any other at start-up.
    """

    gpu_memory_utilization: float
    batch_defaults: Callable[[float, str], tuple[int, int]]
    max_num_seqs_capped_by_batched_tokens: bool
    max_lora_ranks: tuple[int, ...]


@dataclass(frozen=True)
class ModelRunnerRules:
    """What the GPU model runner does that changes a step's cost.

    Attributes
    ----------
    cudagraph_sizes:
        ``(max_num_seqs, max_num_batched_tokens) -> sizes``: the token counts CUDA graphs are
        captured for, ascending; a step of M tokens runs padded to the smallest size >= M, or
        eagerly above the largest.
    lora_kernels_without_lora:
        Steps without any LoRA request still run the LoRA kernels (the CUDA graphs were
        captured with LoRA active).
    specialize_active_lora_supported:
        ``--specialize-active-lora`` exists (LoRA kernel grids sized by the active adapters).
    host_step_s:
        Engine-loop CPU time per step (s) in excess of the V1 engine of vLLM 0.8.5, whose host
        costs the profiles' fitted coefficients already hold; 0 for the V1 releases.
    host_per_seq_s:
        The same per sequence scheduled in the step (decoding or prefilling), s.
    """

    cudagraph_sizes: Callable[[int, int], tuple[int, ...]]
    lora_kernels_without_lora: bool
    specialize_active_lora_supported: bool
    host_step_s: float = 0.0
    host_per_seq_s: float = 0.0


@dataclass(frozen=True)
class LoRAManagerRules:
    """The worker's LoRA adapter caches (``LRUCacheWorkerLoRAManager``).

    Attributes
    ----------
    lora_hash_order:
        ``n_adapters -> rank per adapter``: the iteration order of a step's set of
        ``LoRARequest``s.
    preloaded:
        ``(n_adapters, max_cpu_loras, max_loras) -> (cpu, gpu)``: adapters in the CPU cache
        and in GPU slots after the start-up loads of ``--lora-modules``.
    apply_adapters:
        ``set_active_adapters`` of a step whose batch needs loads (see
        :func:`loratwin.twin.vllm_0_8_5.lora_manager.apply_adapters`).
    """

    lora_hash_order: Callable[[int], list[int]]
    preloaded: Callable[[int, int, int], tuple[range, range]]
    apply_adapters: Callable[..., Any]


@dataclass(frozen=True)
class ReleaseRules:
    """All rules of one vLLM release the twin applies (see ``docs/twin-versions.md``)."""

    version: str
    scheduler: SchedulerRules
    kv_cache: KVCacheRules
    lora_manager: LoRAManagerRules
    defaults: EngineDefaults
    model_runner: ModelRunnerRules


def normalise_version(text: str | None) -> str:
    """The twin's name of a vLLM release: ``"0.32.0"`` -> ``"0.32"``, ``"v0.8.5"`` -> ``"0.8.5"``.

    ``None`` gives :data:`DEFAULT_VERSION`.

    Raises
    ------
    ConfigError
        A release the twin does not know (the message lists the known ones).
    """
    if text is None:
        return DEFAULT_VERSION
    v = str(text).strip().removeprefix("v")
    v = v.split(".post")[0] if ".post" in v else v
    if v in _PACKAGES:
        return v
    parts = v.split(".")
    line = ".".join(parts[:2])
    if len(parts) == 3 and parts[2].isdigit() and line in _PACKAGES and line != "0.8":
        return line
    raise ConfigError(
        f"unknown vLLM version {text!r}; known: {', '.join(KNOWN_VERSIONS)}",
        field="vllm_version",
    )


def release_rules(version: str | None) -> ReleaseRules:
    """The :class:`ReleaseRules` of a release (any spelling :func:`normalise_version` takes).

    Raises
    ------
    ConfigError
        Unknown release.
    """
    name = normalise_version(version)
    rules: ReleaseRules = import_module(f"loratwin.twin.{_PACKAGES[name]}").RULES
    return rules


def slot_rank(rank: int, version: str | None = None) -> int:
    """``--max-lora-rank`` a server of ``version`` needs for adapters of rank <= ``rank``.

    The smallest value the release accepts (:attr:`EngineDefaults.max_lora_ranks`) that is
    >= ``rank``: vLLM sizes every LoRA slot at ``max_lora_rank``, so the GPU memory and the
    LoRA kernels of the server are those of this rank, not of the adapters' own ranks.

    Raises
    ------
    ConfigError
        Unknown release, a rank < 1, or a rank above the largest the release accepts (no
        vLLM server of that release can serve the adapter).
    """
    ranks = release_rules(version).defaults.max_lora_ranks
    if rank < 1:
        raise ConfigError(f"LoRA rank must be >= 1 (got {rank})", field="rank")
    for r in ranks:
        if r >= rank:
            return r
    raise ConfigError(
        f"LoRA rank {rank} is above the largest --max-lora-rank vLLM "
        f"{normalise_version(version)} accepts ({ranks[-1]})", field="rank",
    )
