"""A deliberately literal, slow re-statement of vLLM 0.32's V1 scheduling loop.

One object per request with vLLM's counters (``num_computed_tokens``,
``num_output_placeholders``, ``num_stale_output_tokens``), walked every step as
``vllm/v1/core/sched/scheduler.py`` and ``async_scheduler.py`` of vLLM 0.32 do, driven as
``EngineCore.step_with_batch_queue`` drives them: with asynchronous scheduling ``schedule()``
of step n+1 runs before ``update_from_output`` of step n. KV blocks are counted (less the
null block); a waiting request needs free blocks for its whole sequence
(``scheduler_reserve_full_isl``). ``count_all_running_loras`` gives 0.33's ``max_loras`` rule
(the adapters of all running requests count, see ``reference_0_33``).
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

WAITING, RUNNING, PREEMPTED, FINISHED = "waiting", "running", "preempted", "finished"


@dataclass
class _Req:
    rid: int
    adapter: int
    prompt: int
    max_tokens: int
    arrival: float
    status: str = WAITING
    computed: int = 0  # num_computed_tokens (counts scheduled tokens at once)
    output: int = 0  # output tokens delivered (update_from_output)
    placeholders: int = 0  # num_output_placeholders: sampled tokens still in flight
    in_flight: int = 0  # num_in_flight_tokens
    stale: int = 0  # num_stale_output_tokens
    blocks: int = 0
    prefill_chunk: bool = False  # is_prefill_chunk after the last schedule()
    prefilling: bool = False  # admitted and still computing its prompt (or recomputing)
    sampled: int = 0  # tokens sampled so far (client view)
    first_token: float = math.nan
    finish: float = math.nan

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
    count_all_running_loras: bool = False,
) -> tuple[list[float], list[float], int, int]:
    """Returns (first token times, finish times, preemptions, adapter loads)."""
    server = server.resolved(profile)
    cost = cost or StepCost(profile, server)
    async_sched = bool(server.async_scheduling)
    cap = kv_capacity(profile, server.max_loras, server.max_lora_rank,
                      enable_lora=server.enable_lora, max_num_seqs=server.max_num_seqs,
                      gpu_memory_utilization=server.gpu_memory_utilization,
                      max_model_len=server.max_model_len)
    free = cap.blocks - 1  # BlockPool.null_block
    bs = server.block_size
    max_loras = server.max_loras if server.enable_lora else 10**9
    max_len = server.max_model_len or profile.max_model_len
    reqs = [
        _Req(i, int(requests.adapter[i]), int(requests.input_tokens[i]),
             int(requests.output_tokens[i]), float(requests.arrival_s[i]))
        for i in range(len(requests))
    ]
    n_ad = len(ranks)
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
    # the batch whose output is not processed yet: ({rid: tokens}, {rid: sampled?}, step)
    in_flight: tuple[dict[int, int], dict[int, bool], int] | None = None
    finished_by_step: dict[int, list[int]] = {}
    records: list[tuple[int, float, dict[int, int], list[int]]] = []
    t = 0.0
    ia = 0
    step = 0
    preemptions = 0
    loads = 0
    port_cap = client.max_ports if client.max_ports is not None else 10**18
    inflight = 0
    closed: deque[float] = deque()

    def update_from_output(out: tuple[dict[int, int], dict[int, bool], int]) -> None:
        """``Scheduler.update_from_output`` (+ AsyncScheduler's placeholder bookkeeping)."""
        nonlocal free
        sched, sampled, s_step = out
        stopped: list[_Req] = []
        for rid, n in sched.items():
            r = reqs[rid]
            r.in_flight -= n
            is_stale = False
            if r.stale > 0:
                is_stale = True
                r.stale -= n
            if r.status == FINISHED or not sampled[rid]:
                continue
            r.output += 1
            if not is_stale and r.placeholders > 0:
                r.placeholders -= 1
            if r.output >= r.max_tokens or r.num_tokens >= max_len:
                stopped.append(r)
        for r in stopped:
            if r.status == RUNNING:
                running.remove(r)
            else:
                waiting.remove(r)
            r.status = FINISHED
            free += r.blocks
            r.blocks = 0
            finished_by_step.setdefault(s_step, []).append(r.rid)

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
            if in_flight is not None:
                update_from_output(in_flight)
                in_flight = None
                continue
            if ia >= len(reqs) or reqs[ia].arrival >= client.duration_s:
                break
            t = reqs[ia].arrival
            continue
        if t >= client.duration_s:
            break
        # ------------------------------------------------------------ schedule()
        budget = server.max_num_batched_tokens
        scheduled: dict[int, int] = {}
        preempted: list[_Req] = []
        i = 0
        while i < len(running) and budget > 0:
            r = running[i]
            if (r.placeholders > 0
                    and r.computed + 2 - r.placeholders >= r.prompt + r.max_tokens):
                i += 1  # its last token is in flight
                continue
            n_new = min(r.num_tokens + r.placeholders - r.computed, budget)
            n_new = min(n_new, max_len - r.computed - 1)
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
                victim.status = PREEMPTED
                victim.computed = 0
                victim.stale = victim.in_flight
                victim.placeholders = 0
                preemptions += 1
                waiting.appendleft(victim)
                preempted.append(victim)
                if victim is r:
                    ok = False
                    break
            if not ok:
                break
            scheduled[r.rid] = n_new
            budget -= n_new
            i += 1
        if count_all_running_loras:
            loras = {r.adapter for r in running}
        else:
            loras = {r.adapter for r in running if r.rid in scheduled}
        walked = 0
        if not preempted:
            skipped: deque[_Req] = deque()
            while budget > 0 and waiting:
                if len(running) >= server.max_num_seqs:
                    break
                r = waiting[0]
                walked += 1
                if r.stale:  # its in-flight output could resample a position: later
                    waiting.popleft()
                    skipped.appendleft(r)
                    continue
                if len(loras) == max_loras and r.adapter not in loras:
                    waiting.popleft()
                    skipped.appendleft(r)
                    continue
                n_new = min(r.num_tokens, budget)
                if cdiv(r.num_tokens, bs) > free:  # full_sequence_must_fit
                    break
                need = cdiv(n_new, bs)
                waiting.popleft()
                free -= need
                r.blocks = need
                r.computed = 0
                r.status = RUNNING
                r.prefilling = True
                running.append(r)
                loras.add(r.adapter)
                scheduled[r.rid] = n_new
                budget -= n_new
            waiting.extendleft(skipped)
        # _update_after_schedule
        sampled: dict[int, bool] = {}
        for rid, n in scheduled.items():
            r = reqs[rid]
            r.computed += n
            r.in_flight += n
            r.prefill_chunk = r.computed < r.num_tokens + r.placeholders
            sampled[rid] = not r.prefill_chunk
            if async_sched and not r.prefill_chunk:
                r.placeholders += 1
        n_running_sched = len(running)
        this = (scheduled, sampled, step)
        released = False
        if async_sched and in_flight is not None:  # the previous step's output arrives now
            before = len(finished_by_step.get(in_flight[2], ()))
            update_from_output(in_flight)
            released = len(finished_by_step.get(in_flight[2], ())) > before
            in_flight = None
        if not scheduled:
            if not preempted and not released:  # nothing runs until the next arrival
                if ia >= len(reqs) or reqs[ia].arrival >= client.duration_s:
                    break
                t = max(t, reqs[ia].arrival)
                continue
            records.append((step, t, {}, sorted(p.rid for p in preempted)))
            step += 1
            continue
        records.append((step, t, dict(scheduled), sorted(p.rid for p in preempted)))
        # ------------------------------------------------------------ execute the step
        batch = [reqs[rid] for rid in scheduled]
        load_time = 0.0
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
        ctx = sum(r.computed for r in decoders)
        n_pref = len(batch) - n_dec
        n_ads = len({r.adapter for r in batch})
        e_s = cost.exec_s(n_tok, n_dec, n_pref, ctx, n_ads)
        s_s = cost.sched_s(n_running_sched, walked)
        dt = (max(e_s, s_s) if cost.overlap else e_s + s_s) + load_time
        t += dt
        for r in batch:
            if sampled[r.rid]:
                r.prefilling = False
                r.sampled += 1
                if r.sampled == 1:
                    r.first_token = t
                if r.sampled >= r.max_tokens or r.prompt + r.sampled >= max_len:
                    r.finish = t
                    inflight -= 1
                    closed.append(t)
        if async_sched:
            in_flight = this
        else:
            update_from_output(this)
        step += 1
    if in_flight is not None:  # the last step's output (its tokens were sampled)
        update_from_output(in_flight)
    if trace is not None:
        for s_step, t_step, sched, pre in records:
            trace.append(StepTrace(s_step, t_step, sched, tuple(pre),
                                   tuple(sorted(finished_by_step.get(s_step, ())))))
    return [r.first_token for r in reqs], [r.finish for r in reqs], preemptions, loads
