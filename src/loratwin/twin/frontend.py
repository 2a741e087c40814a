"""The API server in front of the engine: a serial per-request cost before a request enters.

vLLM's OpenAI server handles each request in one process before handing it to the engine
(parsing, validation, tokenisation or prompt checks, ``vllm/entrypoints/openai``), so under
a burst requests reach the engine one ``per_request_s`` after the other. Seen from the
engine this is a single FIFO server with a deterministic service time: request i enters at
``e_i = max(a_i, e_{i-1}) + s``. It matters where ``s`` is comparable to the engine's step
time (vLLM's CPU backend; a GPU server at hundreds of requests per second); profiles that
do not measure it have ``s = 0`` and the arrivals are unchanged.
"""

from __future__ import annotations

import numpy as np

from loratwin.workload.types import Requests


def frontend_arrivals(arrival_s: np.ndarray, per_request_s: float) -> np.ndarray:
    """Engine arrival times (s) of requests sent at ``arrival_s`` (non-decreasing, s).

    ``e_i = max(a_i, e_{i-1}) + s`` in closed form: ``e_i = (i + 1) s + max_{j <= i}
    (a_j - j s)``.
    """
    a = np.asarray(arrival_s, np.float64)
    if per_request_s <= 0 or a.size == 0:
        return a
    k = np.arange(a.size, dtype=np.float64) * per_request_s
    return np.maximum.accumulate(a - k) + k + per_request_s


def through_frontend(requests: Requests, per_request_s: float) -> Requests:
    """``requests`` as the engine receives them (only the arrival times change)."""
    if per_request_s <= 0:
        return requests
    return Requests(frontend_arrivals(requests.arrival_s, per_request_s), requests.adapter,
                    requests.input_tokens, requests.output_tokens)
