"""The server's vLLM flags for a benchmark row: from the server, the command line, options.

Sources, in order of trust:

1. what the server reports in ``/metrics`` (``max_loras`` from ``vllm:lora_requests_info``,
   the KV block size and block count from ``vllm:cache_config_info``);
2. the launch command, when loratwin started the server (``--max-loras 4``);
3. options named like vLLM's flags (``--max-loras``, ``--max-cpu-loras``, ``--max-lora-rank``,
   ``--max-num-seqs``, ``--max-num-batched-tokens``) and the ``server:`` section of a YAML
   workload;
4. vLLM's defaults (``vllm/engine/arg_utils.py``: ``max_loras`` 1, ``max_cpu_loras`` =
   ``max_loras``, ``max_lora_rank`` 16, and for the OpenAI server ``max_num_seqs`` 256 and
   ``max_num_batched_tokens`` 2048 on a GPU below 70 GiB, 128 and 2048 on the CPU backend).

Two sources that disagree are an error: a benchmark row with the wrong flags would validate
the twin against a server it does not describe. The chosen value's source is recorded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loratwin.errors import ConfigError
from loratwin.live.launcher import flag_value
from loratwin.live.metrics import ServerFacts
from loratwin.live.workload import FLAG_NAMES

#: vLLM's defaults per platform for flags nobody stated (see the module docstring).
DEFAULTS: dict[str, dict[str, int]] = {
    "cpu": {"max_loras": 1, "max_lora_rank": 16, "max_num_seqs": 128,
            "max_num_batched_tokens": 2048},
    "gpu": {"max_loras": 1, "max_lora_rank": 16, "max_num_seqs": 256,
            "max_num_batched_tokens": 2048},
}


@dataclass(frozen=True)
class ResolvedFlags:
    """Flag values (vLLM names) and where each came from (``server``, ``command``,
    ``option``, ``workload`` or ``vllm default``)."""

    values: dict[str, int]
    sources: dict[str, str]

    def describe(self) -> str:
        """``name=value (source); ...`` for the row's ``flags_source`` column."""
        return "; ".join(f"{k}={self.values[k]} ({self.sources[k]})" for k in FLAG_NAMES)

    def defaulted(self) -> list[str]:
        """The flags nobody stated (filled with vLLM's defaults), in :data:`FLAG_NAMES` order."""
        return [k for k in FLAG_NAMES if self.sources[k] == "vllm default"]


def _cli_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def command_flags(argv: Sequence[str]) -> dict[str, int]:
    """The flags of :data:`FLAG_NAMES` that a ``vllm serve`` command line sets.

    Raises
    ------
    ConfigError
        A flag with a value that is not an integer.
    """
    out: dict[str, int] = {}
    for name in FLAG_NAMES:
        v = flag_value(argv, _cli_flag(name))
        if v is None:
            continue
        try:
            out[name] = int(str(v))
        except ValueError:
            raise ConfigError(f"{_cli_flag(name)} {v!r} is not an integer",
                              field="launch") from None
    return out


def resolve_flags(
    *,
    facts: ServerFacts,
    command: Mapping[str, int] | None = None,
    options: Mapping[str, int | None] | None = None,
    workload: Mapping[str, int] | None = None,
    platform: str = "gpu",
) -> ResolvedFlags:
    """Combine the sources of the module docstring into one set of flags.

    Raises
    ------
    ConfigError
        Two sources state different values for one flag (the message names the flag and
        both values), or ``max_cpu_loras < max_loras``.
    """
    stated: dict[str, list[tuple[str, int]]] = {k: [] for k in FLAG_NAMES}
    if facts.max_loras is not None:
        stated["max_loras"].append(("server", facts.max_loras))
    for source, given in (("command", command), ("option", options), ("workload", workload)):
        for k, v in (given or {}).items():
            if v is not None:
                stated[k].append((source, int(v)))
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    for k in FLAG_NAMES:
        seen = stated[k]
        for (s1, v1), (s2, v2) in itertools.pairwise(seen):
            if v1 != v2:
                raise ConfigError(
                    f"the {s2} says {v2} but the {s1} says {v1}"
                    + (" (vllm:lora_requests_info max_lora)" if s1 == "server" else ""),
                    field=k,
                )
        if seen:
            values[k], sources[k] = seen[0][1], seen[0][0]
    defaults = DEFAULTS.get(platform, DEFAULTS["gpu"])
    for k in FLAG_NAMES:
        if k in values:
            continue
        if k == "max_cpu_loras":
            values[k] = values.get("max_loras", defaults["max_loras"])
        else:
            values[k] = defaults[k]
        sources[k] = "vllm default"
    if values["max_cpu_loras"] < values["max_loras"]:
        raise ConfigError(f"{values['max_cpu_loras']} is below max_loras "
                          f"{values['max_loras']} (vLLM refuses to start)",
                          field="max_cpu_loras")
    return ResolvedFlags(values, sources)
