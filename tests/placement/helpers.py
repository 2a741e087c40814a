"""Checks shared by the placement tests."""

from __future__ import annotations

import math
from collections import defaultdict

from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Placement
from loratwin.twin.release import release_rules

#: Algorithms that may split an adapter's traffic over GPUs.
SPLITTING = ("loraserve", "dlora-proactive")


def check_valid(problem: PlacementProblem, placement: Placement, *, may_split: bool) -> None:
    """Every adapter placed exactly once (or in pieces summing to its rate), memory limits,
    vLLM flag consistency."""
    by_id = {a.id: a for a in problem.adapters}
    served: dict[str, float] = defaultdict(float)
    pieces: dict[str, int] = defaultdict(int)
    assert placement.gpus >= 1
    for g in placement.servers:
        ids = [a.id for a in g.adapters]
        assert ids, "empty GPU"
        assert len(set(ids)) == len(ids), "an adapter twice on one GPU"
        for a in g.adapters:
            orig = by_id[a.id]
            assert (a.rank, a.mean_input_tokens, a.mean_output_tokens) == (
                orig.rank, orig.mean_input_tokens, orig.mean_output_tokens)
            assert a.rate >= 0
            served[a.id] += a.rate
            pieces[a.id] += 1
        assert g.max_lora_rank >= max(a.rank for a in g.adapters)
        accepted = release_rules(problem.vllm_version or problem.profile.vllm_version
                                 ).defaults.max_lora_ranks
        assert g.max_lora_rank in accepted, f"--max-lora-rank {g.max_lora_rank}: vLLM refuses it"
        assert 1 <= g.max_loras <= problem.max_loras_limit(g.max_lora_rank)
        assert g.max_cpu_loras >= g.max_loras
        assert g.max_cpu_loras >= len(g.adapters)
        assert g.max_num_seqs == problem.max_num_seqs
        for key in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms",
                    "starvation_probability", "headroom"):
            assert key in g.predicted
    assert set(served) == set(by_id), "some adapter is not placed"
    for i, a in by_id.items():
        if may_split:
            assert math.isclose(served[i], a.rate, rel_tol=1e-9, abs_tol=1e-12), i
        else:
            assert pieces[i] == 1, f"{i} placed {pieces[i]} times"
            assert served[i] == a.rate
