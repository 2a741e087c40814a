"""Request rates sized from a fitted profile: a workload that is sure to starve a server.

A fixed rate starves a CPU vLLM server on a loaded host and not on a quiet one (the server's
step times follow the host's load). :func:`starving_rate` sizes the rate from the profile
fitted on that same host instead: ``overload`` times an upper bound of the requests per
second the server can prefill.
"""

from __future__ import annotations

from loratwin.profile.model import Profile

#: The starving runs offer this many times the most requests/s the profile can prefill.
OVERLOAD = 2.5


def prefill_capacity_bound_req_s(profile: Profile, prompt_tokens: float, rank: int) -> float:
    """An upper bound of the requests/s the server can prefill (req/s).

    The profile's cost of one request's prefill (s): its per-request term plus the
    per-token and LoRA per-token-and-rank terms at ``rank`` (pass the smallest rank used).
    No decode and no per-step base cost are counted, so the true capacity is lower.
    """
    s = profile.step
    cost_s = s.per_prefill_req_s + prompt_tokens * (s.per_token_s + rank * s.lora_token_rank_s)
    if cost_s <= 0:
        raise ValueError("the profile's prefill cost is 0: no capacity bound")
    return 1.0 / cost_s


def starving_rate(profile: Profile, n_adapters: int, min_rate: float, prompt_tokens: float,
                  rank: int, overload: float = OVERLOAD) -> float:
    """req/s per adapter so that ``n_adapters`` adapters together offer ``overload`` x
    :func:`prefill_capacity_bound_req_s`, and at least ``min_rate`` (req/s)."""
    bound = prefill_capacity_bound_req_s(profile, prompt_tokens, rank)
    return max(min_rate, overload * bound / n_adapters)
