"""The length window of vLLM's ShareGPT sampler, shared by the length distributions.

Also the sample-size check every ``sample(n, rng)`` method uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loratwin.errors import ConfigError


def check_sample_size(n: int) -> int:
    """``n`` as an int; raises :class:`ConfigError` unless it is an integer >= 0."""
    if int(n) != n or n < 0:
        raise ConfigError(f"must be an integer >= 0 (got {n})", field="n")
    return int(n)


@dataclass(frozen=True)
class LengthFilter:
    """Keep a pair iff ``min_input <= input <= max_input``, ``output >= min_output`` and
    ``input + output <= max_total`` (all in tokens).

    The defaults are the ShareGPT filter of vLLM's ``benchmarks/benchmark_serving.py``
    sampler of the measured era (prompt in [4, 1024], output >= 4, prompt + output <= 2048;
    data README, ``workloads/``).
    """

    min_input: int = 4
    max_input: int = 1024
    min_output: int = 4
    max_total: int = 2048

    def __post_init__(self) -> None:
        for name in ("min_input", "max_input", "min_output", "max_total"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ConfigError(f"must be an integer >= 1 (got {v})", field=name)
        if self.max_input < self.min_input:
            raise ConfigError(f"must be >= min_input ({self.min_input}) (got {self.max_input})",
                              field="max_input")
        if self.max_total < self.min_input + self.min_output:
            raise ConfigError(
                f"must be >= min_input + min_output ({self.min_input + self.min_output}) "
                f"(got {self.max_total})", field="max_total")

    def mask(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """bool (n,): which pairs the filter keeps."""
        i = np.asarray(input_tokens, np.int64)
        o = np.asarray(output_tokens, np.int64)
        return ((i >= self.min_input) & (i <= self.max_input) & (o >= self.min_output)
                & (i + o <= self.max_total))


#: vLLM's ShareGPT sampler filter (prompt in [4, 1024], output >= 4, total <= 2048).
VLLM_SHAREGPT_FILTER = LengthFilter()
