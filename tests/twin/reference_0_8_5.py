"""A deliberately literal, slow re-statement of vLLM 0.8.5's V1 scheduling loop.

It keeps one object per request and walks the running list and the waiting deque every step,
exactly as ``vllm/v1/core/sched/scheduler.py`` (``Scheduler.schedule`` and
``update_from_output``) of vLLM 0.8.5 does, with a counting KV block pool (less the null
block) and LRU LoRA caches, driven synchronously as ``EngineCore.step`` does: schedule,
execute, process the output. The fast engine (:mod:`loratwin.twin.engine`) must produce the
same per-request times and per-step traces; the tests compare the two on random workloads,
and ``tests/realvllm`` compares the traces with vLLM 0.8.5's own scheduler.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

from loratwin.profile.model import Profile, kv_capacity
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.trace import StepTrace
from loratwin.twin.vllm_0_8_5.lora_manager import lora_hash_order
from loratwin.workload.types import Requests


@dataclass
class _Req:
    rid: int
    adapter: int
    prompt: int
    max_tokens: int
    arrival: float
    computed: int = 0
    output: int = 0
    blocks: int = 0
    first_token: float = math.nan
    finish: float = math.nan
    preempted: bool = False
    prefilling: bool = False  # admitted and still computing its prompt (or recomputing)

    @property
    def num_tokens(self) -> int:
        return self.prompt + self.output


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def reference_run(
    profile: Profile,
    server: ServerConfig,
    ranks: list[int],
    requests: Requests,
    client: ClientConfig,
    *,
    cost: StepCost | None = None,
    trace: list[StepTrace] | None = None,
) -> tuple[list[float], list[float], int, int]:
    """Returns (first token times, finish times, preemptions, adapter loads)."""
    server = server.resolved(profile)
    assert server.vllm_version == "0.8.5"
    cost = cost or StepCost(profile, server)
    cap = kv_capacity(profile, server.max_loras, server.max_lora_rank,
                      enable_lora=server.enable_lora, max_num_seqs=server.max_num_seqs,
                      gpu_memory_utilization=server.gpu_memory_utilization,
                      max_model_len=server.max_model_len)
    free = cap.blocks - 1  # BlockPool.null_block
    bs = server.block_size
    max_loras = server.max_loras if server.enable_lora else 10**9
    reqs = [
        _Req(i, int(requests.adapter[i]), int(requests.input_tokens[i]),
             int(requests.output_tokens[i]), float(requests.arrival_s[i]))
        for i in range(len(requests))
    ]
    n_ad = len(ranks)
    # vLLM's two LRU caches as ordered dicts (first = least recently used), filled at
    # start-up in adapter order by the static --lora-modules
    order = lora_hash_order(n_ad)
    cpu: OrderedDict[int, None] = OrderedDict()
    gpu: OrderedDict[int, None] = OrderedDict()
    if server.enable_lora:
        for a in range(n_ad):
            cpu[a] = None
            if len(cpu) > server.cpu_loras:
                victim = next(iter(cpu))
                del cpu[victim]
                gpu.pop(victim, None)
            gpu[a] = None
            if len(gpu) > max_loras:
                del gpu[next(iter(gpu))]
    waiting: deque[_Req] = deque()
    running: list[_Req] = []
    t = 0.0
    ia = 0
    step = 0
    preemptions = 0
    loads = 0
    port_cap = client.max_ports if client.max_ports is not None else 10**18
    inflight = 0
    closed: deque[float] = deque()
    max_len = server.max_model_len or profile.max_model_len
    while True:
        while closed and closed[0] + client.time_wait_s <= t:
            closed.popleft()
        while ia < len(reqs) and reqs[ia].arrival <= t:
            r = reqs[ia]
            ia += 1
            if inflight + len(closed) >= port_cap:
                continue
            if r.prompt + r.max_tokens > max_len:
                continue
            inflight += 1
            waiting.append(r)
        if not running and not waiting:
            if ia >= len(reqs) or reqs[ia].arrival >= client.duration_s:
                break
            t = reqs[ia].arrival
            continue
        if t >= client.duration_s:
            break
        budget = server.max_num_batched_tokens
        scheduled: dict[int, int] = {}
        preempted: list[_Req] = []
        i = 0
        while i < len(running) and budget > 0:
            r = running[i]
            n_new = min(r.num_tokens - r.computed, budget)
            if n_new == 0:
                i += 1
                continue
            while True:
                need = cdiv(r.computed + n_new, bs) - r.blocks
                if need <= free:
                    free -= max(need, 0)
                    r.blocks += max(need, 0)
                    ok = True
                    break
                victim = running.pop()
                free += victim.blocks
                victim.blocks = 0
                victim.computed = 0
                victim.preempted = True
                preemptions += 1
                waiting.appendleft(victim)
                preempted.append(victim)
                scheduled.pop(victim.rid, None)
                if victim is r:
                    ok = False
                    break
            if not ok:
                break
            scheduled[r.rid] = n_new
            budget -= n_new
            i += 1
        loras = {r.adapter for r in running if r.rid in scheduled}
        skipped: deque[_Req] = deque()
        walked = 0
        load_time = 0.0
        if not preempted:
            while waiting and budget > 0:
                if len(running) == server.max_num_seqs:
                    break
                r = waiting[0]
                walked += 1
                if len(loras) == max_loras and r.adapter not in loras:
                    waiting.popleft()
                    skipped.appendleft(r)
                    continue
                n_new = min(r.num_tokens, budget)
                need = cdiv(n_new, bs)
                if need > free:
                    break
                waiting.popleft()
                free -= need
                r.blocks = need
                r.computed = 0
                r.prefilling = True
                running.append(r)
                loras.add(r.adapter)
                scheduled[r.rid] = n_new
                budget -= n_new
        if skipped:
            waiting.extendleft(skipped)
        batch = [r for r in running if r.rid in scheduled]
        if not batch:
            if preempted:
                if trace is not None:
                    trace.append(StepTrace(step, t, {}, tuple(sorted(p.rid for p in preempted)),
                                           ()))
                step += 1
                continue
            if ia >= len(reqs) or reqs[ia].arrival >= client.duration_s:
                break
            t = max(t, reqs[ia].arrival)
            continue
        # vLLM's _apply_adapters: walk the batch's adapters in hash order; each one is
        # loaded if missing (evicting the LRU head) and then touched in both caches
        if server.enable_lora:
            for a in sorted({r.adapter for r in batch}, key=order.__getitem__):
                if a not in gpu:
                    loads += 1
                    load_time += cost.cpu_load_s(ranks[a])
                    if a not in cpu:
                        load_time += cost.disk_load_s(ranks[a])
                        if len(cpu) >= server.cpu_loras:
                            victim = next(iter(cpu))
                            del cpu[victim]
                            gpu.pop(victim, None)
                        cpu[a] = None
                    if len(gpu) >= max_loras:
                        del gpu[next(iter(gpu))]
                    gpu[a] = None
                cpu.move_to_end(a)
                gpu.move_to_end(a)
        n_tok = sum(scheduled.values())
        decoders = [r for r in batch if not r.prefilling]
        n_dec = len(decoders)
        ctx = sum(r.computed + 1 for r in decoders)
        n_pref = len(batch) - n_dec
        n_ads = len({r.adapter for r in running})
        dt = (cost.exec_s(n_tok, n_dec, n_pref, ctx, n_ads)
              + cost.sched_s(len(running), walked) + load_time)
        t_step = t
        t += dt
        still: list[_Req] = []
        finished: list[int] = []
        for r in running:
            n_new = scheduled.get(r.rid, 0)
            if n_new:
                r.computed += n_new
                if r.computed >= r.num_tokens:
                    r.prefilling = False
                    r.output += 1
                    if r.output == 1:
                        r.first_token = t
                    if r.output >= r.max_tokens or r.num_tokens >= max_len:
                        r.finish = t
                        free += r.blocks
                        r.blocks = 0
                        inflight -= 1
                        closed.append(t)
                        finished.append(r.rid)
                        continue
            still.append(r)
        running = still
        if trace is not None:
            trace.append(StepTrace(step, t_step, dict(scheduled),
                                   tuple(sorted(p.rid for p in preempted)),
                                   tuple(sorted(finished))))
        step += 1
    return [r.first_token for r in reqs], [r.finish for r in reqs], preemptions, loads
