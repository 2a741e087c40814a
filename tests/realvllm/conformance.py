"""Random request streams for vLLM's scheduler and the twin, and their step-by-step comparison.

A stream is plain JSON (see ``vllm_driver.py``) so that vLLM can run it in a venv without
loratwin. The twin runs the same stream with the costs taken out (every step 1 s,
``tests/twin/stepcost.py``), arrivals at whole steps, a KV cache of exactly the stream's
blocks and no client limits; both sides then list per step the scheduled request ids and
token counts, the preempted ids and the finished ids, and the distinct adapters follow from
the scheduled ids.

The streams put several adapters over few GPU slots (``max_loras`` 1-3), a small KV cache
(preemptions), a small token budget (chunked prefill) and arrivals spread over the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loratwin.profile.model import KVModel, Profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.twin.trace import StepTrace
from loratwin.workload.types import Requests
from tests.twin import reference_0_8_5, reference_0_32, reference_0_33
from tests.twin.stepcost import UnitStepCost

BLOCK_SIZE = 16
REFERENCES = {
    "0.8.5": reference_0_8_5.reference_run,
    "0.32": reference_0_32.reference_run,
    "0.33": reference_0_33.reference_run,
}

#: One step of a trace: (start time in steps, {request: tokens}, preempted, finished).
Step = tuple[float, dict[int, int], tuple[int, ...], tuple[int, ...]]


def random_stream(seed: int, version: str) -> dict[str, Any]:
    """A random stream (JSON-ready) for vLLM ``version``'s scheduler."""
    rng = np.random.default_rng([seed, 11])
    n_ad = int(rng.integers(1, 7))
    max_loras = int(rng.integers(1, 4))
    seqs = int(rng.integers(2, 17))
    budget = int(rng.integers(max(seqs, 16), 129))
    blocks = int(rng.integers(12, 61))
    max_model_len = (blocks - 2) * BLOCK_SIZE
    n = int(rng.integers(5, 41))
    horizon = int(rng.integers(0, 40))
    arrivals = np.sort(rng.integers(0, horizon + 1, n))
    requests = []
    for i in range(n):
        out = int(rng.integers(1, 61))
        prompt = int(rng.integers(1, min(200, max_model_len - out) + 1))
        requests.append([int(arrivals[i]), prompt, out, int(rng.integers(0, n_ad))])
    return {
        "seed": seed, "max_loras": max_loras, "n_adapters": n_ad, "max_num_seqs": seqs,
        "max_num_batched_tokens": budget, "num_gpu_blocks": blocks, "block_size": BLOCK_SIZE,
        "max_model_len": max_model_len,
        "async_scheduling": version != "0.8.5" and bool(rng.random() < 0.8),
        "requests": requests,
    }


def _profile_with_blocks(profile: Profile, blocks: int, max_model_len: int) -> Profile:
    """The profile with a KV cache of exactly ``blocks`` blocks whatever the flags."""
    tokens = float(blocks * profile.block_size)
    kv = KVModel(points=(), rank_lines={16: (tokens, 0.0)}, load_lines={16: (0.0, 0.0)},
                 no_lora_by_max_num_seqs={1: int(tokens), 1 << 20: int(tokens)},
                 reference_max_num_seqs=256, cuda_graph_gib=0.0)
    return profile.model_copy(update={"kv": kv, "max_model_len": max_model_len,
                                      "block_size": BLOCK_SIZE})


def twin_inputs(stream: dict[str, Any], version: str, profile: Profile
                ) -> tuple[Profile, ServerConfig, list[int], Requests, ClientConfig]:
    """The twin's view of a stream: profile, server flags, adapter ranks, requests, client."""
    prof = _profile_with_blocks(profile, stream["num_gpu_blocks"], stream["max_model_len"])
    extra = {} if version == "0.8.5" else {"async_scheduling": stream["async_scheduling"]}
    server = ServerConfig(
        vllm_version=version, max_loras=stream["max_loras"],
        max_cpu_loras=max(stream["n_adapters"], stream["max_loras"]), max_lora_rank=16,
        max_num_seqs=stream["max_num_seqs"],
        max_num_batched_tokens=stream["max_num_batched_tokens"],
        gpu_memory_utilization=prof.gpu_memory_utilization_measured,
        block_size=stream["block_size"], max_model_len=stream["max_model_len"], **extra,
    )
    reqs = np.array(stream["requests"], dtype=np.int64).reshape(-1, 4)
    requests = Requests(reqs[:, 0].astype(float), reqs[:, 3].astype(np.int32),
                        reqs[:, 1].astype(np.int32), reqs[:, 2].astype(np.int32))
    ranks = [16] * stream["n_adapters"]
    return prof, server, ranks, requests, ClientConfig(duration_s=1e9, max_ports=None)


def twin_trace(stream: dict[str, Any], version: str, profile: Profile,
               engine: str = "fast") -> list[Step]:
    """The twin's trace of a stream: ``engine`` is ``fast`` or ``reference``."""
    prof, server, ranks, requests, client = twin_inputs(stream, version, profile)
    trace: list[StepTrace] = []
    cost = UnitStepCost(prof, server)
    if engine == "fast":
        run_engine(prof, server, ranks, requests, client, cost=cost, trace=trace)
    else:
        REFERENCES[version](prof, server, ranks, requests, client, cost=cost, trace=trace)
    return [(s.t_s, dict(s.scheduled), tuple(s.preempted), tuple(s.finished)) for s in trace]


def vllm_steps(raw: Sequence[Sequence[Any]]) -> list[Step]:
    """A trace of ``vllm_driver.py`` (JSON) as steps."""
    return [(float(t), {int(k): int(v) for k, v in sched.items()}, tuple(pre), tuple(fin))
            for t, sched, pre, fin in raw]


@dataclass(frozen=True)
class Comparison:
    """Steps of two traces compared one by one."""

    steps: int
    identical: int
    first_difference: str | None

    @property
    def all_identical(self) -> bool:
        return self.first_difference is None


def compare(expected: list[Step], got: list[Step], adapters: list[int]) -> Comparison:
    """Compare two traces step by step: time, scheduled ids and tokens, preempted ids,
    finished ids and the distinct adapters of the scheduled requests."""
    n = max(len(expected), len(got))
    same = 0
    first: str | None = None
    for i in range(n):
        a = expected[i] if i < len(expected) else None
        b = got[i] if i < len(got) else None
        ok = a is not None and b is not None and a == b and (
            {adapters[r] for r in a[1]} == {adapters[r] for r in b[1]})
        if ok:
            same += 1
        elif first is None:
            first = f"step {i}: vLLM {a} twin {b}"
    return Comparison(n, same, first)


@dataclass
class Tally:
    """Steps compared over many streams, identical ones per twin engine, and failures."""

    steps: int = 0
    same_fast: int = 0
    same_ref: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, seed: int, stream: dict[str, Any], raw: Sequence[Sequence[Any]],
            version: str, profile: Profile) -> None:
        """Compare vLLM's trace ``raw`` of ``stream`` with both twin engines."""
        expected = vllm_steps(raw)
        adapters = [r[3] for r in stream["requests"]]
        fast = compare(expected, twin_trace(stream, version, profile, "fast"), adapters)
        ref = compare(expected, twin_trace(stream, version, profile, "reference"), adapters)
        self.steps += fast.steps
        self.same_fast += fast.identical
        self.same_ref += ref.identical
        for name, c in (("fast", fast), ("reference", ref)):
            if not c.all_identical:
                self.failures.append(f"seed {seed} ({name}): {c.first_difference}")
