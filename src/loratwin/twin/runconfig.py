"""The YAML configuration of one simulation (``loratwin simulate CONFIG.yaml``).

Example::

    model: llama-3.1-8b-instruct        # bundled profile name or a profile JSON path
    server: {max_loras: 32, max_cpu_loras: 256, max_lora_rank: 16, max_num_seqs: 2048}
    adapters: adapters.csv              # CSV/YAML path, or an inline list of {id, rank, rate}
    # trace: requests.csv               # replay instead of synthetic arrivals
    arrivals: {process: poisson}        # or {process: gamma, cv: 2.0}
    lengths: {kind: heavy-tailed}       # default: the profile's ShareGPT means and spreads
    duration_s: 3600
    seed: 0

Relative paths are resolved against the YAML file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loratwin.configfile import validate
from loratwin.errors import ConfigError
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.workload.adapters import AdapterSpec, check_adapters, load_adapters
from loratwin.workload.lengths import BoundedHeavyTailed
from loratwin.workload.spec import ArrivalSpec, LengthSpec, generate_requests
from loratwin.workload.trace import load_trace_csv
from loratwin.workload.types import Adapter, Requests


class ClientSpec(BaseModel):
    """Client settings of the YAML (see :class:`~loratwin.twin.config.ClientConfig`)."""

    model_config = ConfigDict(extra="forbid")

    max_ports: int | None = Field(ClientConfig().max_ports, ge=1)
    time_wait_s: float = Field(ClientConfig().time_wait_s, ge=0.0)


class SimulationConfig(BaseModel):
    """Everything ``loratwin simulate`` needs; every field can also come from a CLI flag."""

    model_config = ConfigDict(extra="forbid")

    model: str = "llama-3.1-8b-instruct"
    server: ServerConfig = Field(default_factory=ServerConfig)
    adapters: str | list[AdapterSpec] | None = None
    trace: str | None = None
    default_rank: int = Field(8, ge=1, description="rank of trace adapters not in `adapters`")
    arrivals: ArrivalSpec = Field(default_factory=ArrivalSpec)
    lengths: LengthSpec | None = None
    duration_s: float = Field(3600.0, gt=0.0)
    seed: int = Field(0, ge=0)
    client: ClientSpec = Field(default_factory=ClientSpec)


@dataclass(frozen=True)
class SimulationInputs:
    """The resolved inputs of :func:`loratwin.twin.simulate`."""

    profile: Profile
    server: ServerConfig
    adapters: list[Adapter]
    requests: Requests
    client: ClientConfig


def parse_config(data: dict[str, Any]) -> SimulationConfig:
    """Validate a config dict; errors become one-line :class:`ConfigError` naming the field."""
    return validate(SimulationConfig, data)


def default_lengths(profile: Profile) -> BoundedHeavyTailed:
    """The profile's ShareGPT length model (vLLM benchmark sampler: prompt 4..1024, sum <= 2048)."""
    return BoundedHeavyTailed(
        mean_input=profile.sharegpt_mean_input_tokens,
        mean_output=profile.sharegpt_mean_output_tokens,
        std_input=profile.sharegpt_std_input_tokens,
        std_output=profile.sharegpt_std_output_tokens,
    )


def resolve_inputs(cfg: SimulationConfig, base_dir: Path | None = None) -> SimulationInputs:
    """Load the profile, adapters and requests a config describes.

    Raises
    ------
    ConfigError, DataError
        Unknown profile, missing files, malformed rows, invalid values.
    """
    base = base_dir or Path.cwd()
    profile = load_profile(cfg.model if not cfg.model.endswith(".json")
                           else str(_resolve(cfg.model, base)))
    adapters: list[Adapter] = []
    if isinstance(cfg.adapters, str):
        adapters = load_adapters(_resolve(cfg.adapters, base))
    elif cfg.adapters is not None:
        adapters = [a.to_adapter() for a in cfg.adapters]
        check_adapters(adapters)
    if cfg.trace is not None:
        # adapters given: the trace may only use them (a misspelt id is an error)
        trace_req, ids = load_trace_csv(_resolve(cfg.trace, base),
                                        adapter_ids=[a.id for a in adapters] or None)
        known = {a.id: a for a in adapters}
        ordered = [known.get(i, Adapter(i, cfg.default_rank, 0.0)) for i in ids]
        # arrivals are sorted: the window is a prefix (no copy when it is the whole trace)
        n = int(np.searchsorted(trace_req.arrival_s, cfg.duration_s, side="left"))
        requests = Requests(
            trace_req.arrival_s[:n], trace_req.adapter[:n],
            trace_req.input_tokens[:n], trace_req.output_tokens[:n],
        )
        adapters = ordered
    else:
        if not adapters:
            raise ConfigError("give `adapters` (a CSV/YAML file or a list) or a `trace`",
                              field="adapters")
        lengths = cfg.lengths if cfg.lengths is not None else default_lengths(profile)
        requests = generate_requests(
            adapters, cfg.duration_s, cfg.arrivals, lengths, cfg.seed, base_dir=base
        )
    client = ClientConfig(
        duration_s=cfg.duration_s, max_ports=cfg.client.max_ports,
        time_wait_s=cfg.client.time_wait_s,
    )
    return SimulationInputs(profile, cfg.server, adapters, requests, client)


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def realised_mean_tokens(requests: Requests) -> tuple[float, float]:
    """Mean input and output tokens of a request set (NaN if empty)."""
    if len(requests) == 0:
        return float("nan"), float("nan")
    return float(np.mean(requests.input_tokens)), float(np.mean(requests.output_tokens))
