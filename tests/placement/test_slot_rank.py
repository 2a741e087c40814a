"""Adapters of ranks vLLM has no ``--max-lora-rank`` for: the plan's flags are ones vLLM
accepts, memory is that of the slot rank vLLM allocates, and ranks above the largest are
refused in one line (``LoRAConfig`` of vLLM 0.8.5 ``vllm/config.py``, 0.32
``vllm/config/lora.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import ConfigError
from loratwin.placement import api
from loratwin.placement.problem import PlacementProblem, group_rows
from loratwin.placement.types import Predictions
from loratwin.profile.model import Profile
from loratwin.surrogate.features import FEATURES
from loratwin.twin.config import ServerConfig
from loratwin.twin.release import slot_rank
from loratwin.workload.types import Adapter
from tests.cli_run import run_cli

from .conftest import AnalyticPredictor
from .helpers import SPLITTING, check_valid


@pytest.mark.parametrize(("rank", "version", "slot"), [
    (7, "0.8.5", 8), (8, "0.8.5", 8), (24, "0.8.5", 32), (300, "0.8.5", 320), (512, "0.8.5", 512),
    (1, "0.8.5", 8), (1, "0.32", 1), (2, "0.32.0", 8), (300, "0.6.3", None), (256, "0.6.3", 256),
    (513, "0.8.5", None), (0, "0.8.5", None),
])
def test_slot_rank_is_the_smallest_accepted_rank(rank: int, version: str, slot: int | None
                                                 ) -> None:
    if slot is None:
        with pytest.raises(ConfigError) as err:
            slot_rank(rank, version)
        assert "\n" not in str(err.value) and str(rank) in str(err.value)
    else:
        assert slot_rank(rank, version) == slot


def test_server_config_refuses_a_rank_vllm_refuses(profile: Profile) -> None:
    with pytest.raises(ValueError, match=r"max_lora_rank: vLLM 0\.8\.5 accepts 8, 16"):
        ServerConfig(max_lora_rank=24).resolved(profile)
    assert ServerConfig(max_lora_rank=1, vllm_version="0.32").max_lora_rank == 1


@pytest.mark.parametrize("algorithm", api.ALGORITHMS)
def test_odd_ranks_get_flags_vllm_accepts(profile: Profile, algorithm: str) -> None:
    adapters = [Adapter(f"a{i}", r, 0.4) for i, r in enumerate((7, 24, 12, 40, 5, 24))]
    problem = PlacementProblem(adapters, profile, AnalyticPredictor())
    placement = api.place(problem, algorithm)
    check_valid(problem, placement, may_split=algorithm in SPLITTING)
    assert problem.max_loras_limit(24) == problem.max_loras_limit(32)
    assert problem.max_loras_limit(40) == problem.max_loras_limit(64)


def test_rank_above_the_largest_is_one_line(profile: Profile) -> None:
    with pytest.raises(ConfigError) as err:
        PlacementProblem([Adapter("big", 1024, 1.0)], profile, AnalyticPredictor())
    msg = str(err.value)
    assert "\n" not in msg and "'big'" in msg and "512" in msg


def test_place_cli_rank_above_the_largest_exits_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "w.csv"
    csv.write_text("id,rank,rate,mean_input_tokens,mean_output_tokens\n"
                   "a,8,1,100,100\nbig,1024,1,100,100\n")
    assert run_cli(["place", str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "1024" in err[0]


def test_surrogate_sees_the_slot_rank(profile: Profile) -> None:
    seen: list[np.ndarray] = []

    class Recording(AnalyticPredictor):
        def predict(self, features: np.ndarray, fields: object = None) -> Predictions:
            seen.append(np.array(features))
            return super().predict(features)

    adapters = [Adapter("a", 24, 1.0), Adapter("b", 5, 1.0), Adapter("c", 16, 1.0)]
    problem = PlacementProblem(adapters, profile, Recording())
    rows = group_rows(problem, [adapters[:2], adapters[1:2], adapters[2:]])
    problem.evaluate(rows)
    col = FEATURES.index("max_rank")
    assert list(rows[:, col]) == [24, 5, 16]  # the caller's rows are left as they were
    assert list(seen[-1][:, col]) == [32, 8, 16]
    means = FEATURES.index("mean_rank")
    assert list(seen[-1][:, means]) == list(rows[:, means])  # adapters' own ranks
