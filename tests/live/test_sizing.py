"""Rates sized from a fitted profile (the starving bench runs of the live end-to-end path)."""

from __future__ import annotations

import pytest

from loratwin.live.sizing import OVERLOAD, prefill_capacity_bound_req_s, starving_rate
from loratwin.profile.store import load_profile


def _cpu_profile():
    prof = load_profile("llama-3.1-8b-instruct")
    step = prof.step.model_copy(update={"per_prefill_req_s": 0.002, "per_token_s": 2e-4,
                                        "lora_token_rank_s": 2.5e-5})
    return prof.model_copy(update={"step": step})


def test_the_bound_is_the_prefill_cost_of_one_request() -> None:
    prof = _cpu_profile()
    # 2 ms + 100 x (0.2 ms + 8 x 0.025 ms) = 42 ms per request
    assert prefill_capacity_bound_req_s(prof, 100, 8) == pytest.approx(1 / 0.042)


def test_starving_rate_offers_overload_times_the_bound_and_at_least_the_minimum() -> None:
    prof = _cpu_profile()
    r = starving_rate(prof, 4, 0.1, 100, 8)
    assert 4 * r == pytest.approx(OVERLOAD / 0.042)
    assert starving_rate(prof, 4, 100.0, 100, 8) == 100.0
    # a slower server (2x the per-token cost) gets a lower rate
    slow = prof.model_copy(update={"step": prof.step.model_copy(
        update={"per_token_s": 4e-4, "lora_token_rank_s": 5e-5})})
    assert starving_rate(slow, 4, 0.1, 100, 8) < r
