"""Configuration of one simulated vLLM server and of the benchmark client driving it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loratwin.configfile import validate
from loratwin.errors import ConfigError
from loratwin.twin.release import normalise_version, release_rules

if TYPE_CHECKING:
    from loratwin.profile.model import Profile

#: Linux's default ephemeral port range (``net.ipv4.ip_local_port_range = 32768 60999``).
LINUX_EPHEMERAL_PORTS = 60999 - 32768 + 1
#: Linux's TIME_WAIT duration in s (``TCP_TIMEWAIT_LEN``).
LINUX_TIME_WAIT_S = 60.0


class ServerConfig(BaseModel):
    """The vLLM engine flags the twin honours, and the vLLM release they are given to.

    Flags a user does not set take the default of the release on the profile's GPU once the
    configuration is :meth:`resolved` against a profile (``simulate`` does that); until then
    they hold vLLM 0.8.5's defaults on a GPU below 70 GiB (256 sequences, 2048 batched tokens,
    ``gpu_memory_utilization`` 0.9), which are also 0.32's on such a GPU but for
    ``gpu_memory_utilization`` (0.92). The release defaults are listed in
    ``docs/twin-versions.md``.

    Attributes
    ----------
    vllm_version:
        vLLM release whose rules the twin applies (``0.8.5``, ``0.32``, ``0.33``; patch
        releases such as ``0.32.0`` map to their line). ``None`` takes the profile's
        (``Profile.vllm_version``).
    async_scheduling:
        ``--async-scheduling``; ``None`` takes the release default (on from 0.32; 0.8.5 has
        none). vLLM's CPU backend turns it off whatever is asked
        (``vllm/platforms/cpu.py``, 0.32: ``scheduler_config.async_scheduling = False``),
        so with a profile of ``device == "cpu"`` it is always off.
    specialize_active_lora:
        ``--specialize-active-lora`` (0.32 and later): LoRA kernel grids sized by the active
        adapters instead of ``max_loras + 1``.
    enable_chunked_prefill:
        ``--enable-chunked-prefill``; ``None`` takes the release default. Only the V0 release
        (0.6.3, default off) can turn it off: prompts then run in steps of their own.
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
        ``max_num_seqs``, non-positive values), an unknown ``vllm_version`` or a flag the
        release does not have.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vllm_version: str | None = None
    async_scheduling: bool | None = None
    specialize_active_lora: bool = False
    enable_chunked_prefill: bool | None = None

    max_loras: int = Field(1, ge=1)
    max_cpu_loras: int | None = Field(None, ge=1)
    max_lora_rank: int = Field(16, ge=1)
    max_num_seqs: int = Field(256, ge=1)
    max_num_batched_tokens: int = Field(2048, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enable_lora: bool = True
    block_size: int = Field(16, ge=1)
    max_model_len: int | None = Field(None, ge=1)

    @field_validator("vllm_version")
    @classmethod
    def _known_version(cls, v: str | None) -> str | None:
        try:
            return None if v is None else normalise_version(v)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="before")
    @classmethod
    def _seqs_follow_budget(cls, data: Any) -> Any:
        """From 0.32 a defaulted ``max_num_seqs`` is lowered to a smaller token budget."""
        if (isinstance(data, dict) and data.get("vllm_version") is not None
                and "max_num_seqs" not in data and "max_num_batched_tokens" in data):
            try:
                rules = release_rules(data["vllm_version"])
                budget = int(data["max_num_batched_tokens"])
            except (ConfigError, TypeError, ValueError):
                return data  # the field validators report it
            if rules.defaults.max_num_seqs_capped_by_batched_tokens and 0 < budget < 256:
                data = {**data, "max_num_seqs": budget}
        return data

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
        if self.vllm_version is not None:
            rules = release_rules(self.vllm_version)
            if self.async_scheduling and not rules.scheduler.async_scheduling_supported:
                raise ValueError(f"async_scheduling: vLLM {self.vllm_version} has none")
            if (self.specialize_active_lora
                    and not rules.model_runner.specialize_active_lora_supported):
                raise ValueError(f"specialize_active_lora: vLLM {self.vllm_version} has none")
            if self.max_lora_rank not in rules.defaults.max_lora_ranks:
                accepted = ", ".join(map(str, rules.defaults.max_lora_ranks))
                raise ValueError(f"max_lora_rank: vLLM {self.vllm_version} accepts {accepted} "
                                 f"(got {self.max_lora_rank})")
            chunking_optional = rules.scheduler.chunked_prefill_optional
            if self.enable_chunked_prefill is False and not chunking_optional:
                raise ValueError(f"enable_chunked_prefill: vLLM {self.vllm_version} (V1) "
                                 "always runs chunked prefill")
        return self

    def resolved(self, profile: Profile) -> ServerConfig:
        """This configuration with the release fixed and unset flags at its defaults.

        The release is ``vllm_version`` or else the profile's; ``max_num_batched_tokens``,
        ``max_num_seqs`` and ``gpu_memory_utilization`` not given explicitly take that
        release's defaults for the profile's GPU (``engine_args`` of the release);
        ``async_scheduling`` its default (always off on vLLM's CPU backend). Resolving twice
        changes nothing.

        Raises
        ------
        ConfigError
            Unknown release, or flags the release refuses.
        """
        version = normalise_version(self.vllm_version or profile.vllm_version)
        rules = release_rules(version)
        given = self.model_fields_set
        data = self.model_dump()
        data["vllm_version"] = version
        budget, seqs = rules.defaults.batch_defaults(profile.gpu_total_memory_gib, profile.gpu)
        if "max_num_batched_tokens" not in given:
            data["max_num_batched_tokens"] = budget
        if "max_num_seqs" not in given:
            if rules.defaults.max_num_seqs_capped_by_batched_tokens:
                seqs = min(seqs, data["max_num_batched_tokens"])
            data["max_num_seqs"] = seqs
        if "gpu_memory_utilization" not in given:
            data["gpu_memory_utilization"] = rules.defaults.gpu_memory_utilization
        if data["async_scheduling"] is None:
            data["async_scheduling"] = rules.scheduler.async_scheduling_default
        if data["enable_chunked_prefill"] is None and rules.scheduler.chunked_prefill_optional:
            data["enable_chunked_prefill"] = rules.scheduler.chunked_prefill_default
        if profile.device == "cpu":  # vllm/platforms/cpu.py forces it off
            data["async_scheduling"] = False
        return validate(ServerConfig, data)  # one-line errors, as for a YAML file

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
