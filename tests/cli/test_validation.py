"""Edge validation of the input files (issue 9): each reader refuses what no real input has,
in one line naming the file, row or field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from loratwin.configfile import validate
from loratwin.errors import ConfigError, DataError
from loratwin.profile.store import load_profile
from loratwin.surrogate.features import FEATURES, check_feature_rows
from loratwin.twin.runconfig import SimulationConfig, parse_config, resolve_inputs
from loratwin.twin.validate import read_real_runs
from loratwin.workload._csvio import check_fields


def _features(**over: float) -> np.ndarray:
    row = dict(sum_rate_req_s=4.0, std_rate_req_s=0.1, max_rank=16, mean_rank=12, std_rank=4,
               max_loras=8, served_adapters=32, mean_input_tokens=300, mean_output_tokens=80,
               arrival_cv=1.0)
    row.update(over)
    return np.array([[row[f] for f in FEATURES]], float)


@pytest.mark.parametrize(("over", "needle"), [
    ({"mean_rank": 17}, "mean_rank: must be <= max_rank"),
    ({"mean_rank": 0.5}, "mean_rank: must be >= 1"),
    ({"std_rank": 7}, "std_rank: too large"),  # bound sqrt((16 - 12) x (12 - 1)) = 6.6
    ({"max_rank": 16.5, "mean_rank": 8}, "max_rank: must be an integer"),
    ({"served_adapters": 1, "std_rate_req_s": 0.01}, "std_rate_req_s: too large"),
    ({"max_loras": 0}, "max_loras: must be an integer >= 1"),
    ({"mean_output_tokens": 0}, "mean_output_tokens: must be > 0"),
])
def test_inconsistent_features(over: dict[str, float], needle: str) -> None:
    problem = check_feature_rows(_features(**over))
    assert problem is not None and problem[0] == 0 and problem[1].startswith(needle)


def test_consistent_features_pass() -> None:
    # all on one adapter: the largest std of the rates; ranks 1 and 16 half each: the largest
    # std of the ranks for that mean (Bhatia-Davis bound reached)
    assert check_feature_rows(_features(served_adapters=2, std_rate_req_s=2.0, max_rank=16,
                                        mean_rank=8.5, std_rank=7.5)) is None


def test_profile_unknown_key_and_bad_value(tmp_path: Path) -> None:
    text = (resources.files("loratwin") / "profile" / "bundled"
            / "llama-3.1-8b-instruct.json").read_text()
    doc = json.loads(text)
    doc["step"]["per_tokn_s"] = 1e-6
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"step\.per_tokn_s: unknown field"):
        load_profile(tmp_path / "a.json")
    doc = json.loads(text)
    doc["frontend_latency_s"] = -0.1
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="frontend_latency_s: must be >= 0"):
        load_profile(tmp_path / "b.json")
    (tmp_path / "c.json").write_bytes(b"\xff\xfe binary")
    with pytest.raises(DataError, match="not a valid profile"):
        load_profile(tmp_path / "c.json")


def test_config_refuses_non_finite_values() -> None:
    with pytest.raises(ConfigError, match=r"^server\.gpu_memory_utilization: must be a finite"):
        validate(SimulationConfig, {"server": {"gpu_memory_utilization": float("nan")}})
    with pytest.raises(ConfigError, match=r"^duration_s: must be a finite number"):
        parse_config({"duration_s": float("inf")})


def test_trace_adapters_must_be_in_the_adapter_list(tmp_path: Path) -> None:
    (tmp_path / "ad.csv").write_text("id,rank,rate\na,8,1\n")
    (tmp_path / "tr.csv").write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                                     "0.1,a,10,5\n0.2,b,10,5\n")
    cfg = parse_config({"adapters": "ad.csv", "trace": "tr.csv", "duration_s": 10})
    with pytest.raises(DataError, match=r"tr\.csv row 3: adapter_id: 'b' is not among"):
        resolve_inputs(cfg, tmp_path)
    alone = resolve_inputs(parse_config({"trace": "tr.csv", "duration_s": 10}), tmp_path)
    assert [a.id for a in alone.adapters] == ["a", "b"]  # no list given: default ranks


def test_ragged_rows_and_real_runs(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("a,b,c\n1,2,3\n\n4,5\n")
    with pytest.raises(DataError, match="row 4: expected 3 fields, got 2"):
        check_fields(path)
    head = ("rank_set,max_lora_rank,max_loras,max_cpu_loras,served_adapters,max_num_seqs,rates,"
            "status\n")
    path.write_text(head + '"8,32",16,2,4,4,64,"0.1",ok\n')
    with pytest.raises(DataError, match=r"row 2: rank_set: expected ranks in \[1, max_lora_rank"):
        read_real_runs(path)
    path.write_text(head + '"8",16,4,2,4,64,"0.1",ok\n')
    with pytest.raises(DataError, match="row 2: max_cpu_loras: must be >= max_loras"):
        read_real_runs(path)
