"""Configuration of one simulated vLLM server and of the benchmark client driving it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Linux's default ephemeral port range (``net.ipv4.ip_local_port_range = 32768 60999``).
LINUX_EPHEMERAL_PORTS = 60999 - 32768 + 1
#: Linux's TIME_WAIT duration in s (``TCP_TIMEWAIT_LEN``).
LINUX_TIME_WAIT_S = 60.0


class ServerConfig(BaseModel):
    """The vLLM engine flags the twin honours (names and defaults as in vLLM 0.8.5).

    Attributes
    ----------
    max_loras:
        GPU LoRA slots = most distinct adapters in one step (``--max-loras``, vLLM default 1).
    max_cpu_loras:
        Adapters held in the CPU cache (``--max-cpu-loras``); ``None`` means ``max_loras``
        as in vLLM. Must be >= ``max_loras`` (vLLM refuses otherwise).
    max_lora_rank:
        Rank of every GPU slot (``--max-lora-rank``, default 16); adapters above it are
        rejected.
    max_num_seqs:
        Cap on running requests (``--max-num-seqs``, default 256).
    max_num_batched_tokens:
        Token budget per step with chunked prefill (``--max-num-batched-tokens``, 2048 in the
        measured runs). vLLM requires it to be >= ``max_num_seqs``.
    gpu_memory_utilization:
        Fraction of GPU memory vLLM may use (``--gpu-memory-utilization``, 0.9).
    enable_lora:
        ``--enable-lora``; without it every request runs on the base model.
    block_size:
        KV cache block size in tokens (16 on CUDA).
    max_model_len:
        ``--max-model-len``; ``None`` takes the profile's (the model's context length).

    Raises
    ------
    pydantic.ValidationError
        On an invalid combination (``max_cpu_loras < max_loras``, budget below
        ``max_num_seqs``, non-positive values).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_loras: int = Field(1, ge=1)
    max_cpu_loras: int | None = Field(None, ge=1)
    max_lora_rank: int = Field(16, ge=1)
    max_num_seqs: int = Field(256, ge=1)
    max_num_batched_tokens: int = Field(2048, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enable_lora: bool = True
    block_size: int = Field(16, ge=1)
    max_model_len: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ValueError(
                f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras})"
            )
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_num_seqs ({self.max_num_seqs}), as vLLM requires"
            )
        return self

    @property
    def cpu_loras(self) -> int:
        """Effective CPU cache size (``max_cpu_loras`` or, if unset, ``max_loras``)."""
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras


class ClientConfig(BaseModel):
    """The benchmark client (vLLM's ``benchmarks/benchmark_serving.py`` on Linux).

    Attributes
    ----------
    duration_s:
        Benchmark window in s. Requests still open when it closes are cancelled and not
        counted, as the real client does.
    max_ports:
        Ephemeral ports the client may use (Linux default 28232). benchmark_serving opens one
        HTTP connection per request and closes it at the end, so every request in flight and
        every connection closed in the last ``time_wait_s`` holds a port; a request that finds
        no free port fails at once and is never sent. ``None`` disables the limit.
    time_wait_s:
        How long a closed connection holds its port (Linux TIME_WAIT, 60 s).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: float = Field(3600.0, gt=0.0)
    max_ports: int | None = Field(LINUX_EPHEMERAL_PORTS, ge=1)
    time_wait_s: float = Field(LINUX_TIME_WAIT_S, ge=0.0)
