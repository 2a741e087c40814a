"""Re-planning a deployed placement (stand-in surrogate, no twin)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loratwin.errors import ConfigError, DataError
from loratwin.placement.api import place
from loratwin.placement.deployed import check_model, parse_deployed
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.replan import ReplanResult, count_moves, match_gpus, replan
from loratwin.placement.report import placement_dict
from loratwin.placement.types import Placement
from loratwin.profile.model import Profile
from loratwin.workload.drift import DriftSpec, drift_day
from loratwin.workload.types import Adapter

from .conftest import AnalyticPredictor, make_adapters
from .helpers import check_valid


def _problem(profile: Profile, adapters: list[Adapter]) -> PlacementProblem:
    return PlacementProblem(adapters, profile, AnalyticPredictor())


def _deployed(placement: Placement, adapters: list[Adapter], names=None,
              model="llama-3.1-8b-instruct"):
    doc = placement_dict(placement, {a.id: a.rate for a in adapters})
    doc["model"] = model
    for k, s in enumerate(doc["servers"]):
        s["name"] = names[k] if names else f"gpu-{k}"
    return parse_deployed(doc)


def _fresh(problem: PlacementProblem) -> Placement:
    return place(problem, confirm_borderline=False)


def _check_safe(problem: PlacementProblem, r: ReplanResult) -> None:
    check_valid(problem, r.placement, may_split=True)
    opts = SearchOptions()
    for g in r.placement.servers:
        assert g.predicted["starvation_probability"] < opts.p_max
    assert r.placement.gpus <= r.cap
    assert len(r.names) == len(set(r.names)) == r.placement.gpus


@pytest.fixture()
def day0(profile: Profile) -> tuple[list[Adapter], PlacementProblem, Placement]:
    ads = make_adapters(60, 190.0, ranks=(8, 16), seed=3)
    problem = _problem(profile, ads)
    return ads, problem, _fresh(problem)


def test_a_safe_placement_is_returned_unchanged(day0) -> None:
    ads, problem, p0 = day0
    r = replan(problem, _deployed(p0, ads), p0)
    assert r.strategy == "unchanged"
    assert (r.moves, r.added, r.removed, r.new_gpus, r.freed_gpus, r.restarted_gpus) == (
        (), (), (), (), (), ())
    assert [sorted(a.id for a in g.adapters) for g in r.placement.servers] == [
        sorted(a.id for a in g.adapters) for g in p0.servers]
    assert r.names == tuple(f"gpu-{k}" for k in range(p0.gpus))


def test_drift_is_repaired_with_fewer_moves_than_a_fresh_placement(profile, day0) -> None:
    ads, _, p0 = day0
    rng = np.random.default_rng(5)
    dep = _deployed(p0, ads)
    total_moves = fresh_moves = 0
    cur = ads
    for day in range(1, 4):
        cur = drift_day(cur, DriftSpec(sigma=0.3), rng, day)
        problem = _problem(profile, cur)
        fresh = _fresh(problem)
        r = replan(problem, dep, fresh)
        _check_safe(problem, r)
        old_ids = dep.adapter_ids
        assert set(r.added) == {a.id for a in cur} - old_ids
        assert set(r.removed) == old_ids - {a.id for a in cur}
        # the fresh placement, matched to the deployed GPUs, is the fallback: never fewer moves
        names = [dep.servers[m].name if m is not None else f"new-{i}"
                 for i, m in enumerate(match_gpus([set(s.adapters) for s in dep.servers],
                                                  [{a.id for a in g.adapters}
                                                   for g in fresh.servers]))]
        f_moves = count_moves(dep.gpus_of(), {a.id: [n] for n, g in zip(names, fresh.servers,
                                                                        strict=True)
                                              for a in g.adapters})
        assert len(r.moves) <= len(f_moves)
        total_moves += len(r.moves)
        fresh_moves += len(f_moves)
        dep = _deployed(r.placement, cur, list(r.names))
    assert total_moves < fresh_moves


def test_an_overloaded_gpu_sheds_its_hottest_adapters(profile, day0) -> None:
    ads, _, p0 = day0
    dep = _deployed(p0, ads)
    hot = set(dep.servers[0].adapters)
    new = [dataclasses.replace(a, rate=a.rate * 1.6) if a.id in hot else a for a in ads]
    problem = _problem(profile, new)
    r = replan(problem, dep, _fresh(problem), extra_gpus=1)
    _check_safe(problem, r)
    assert r.strategy == "repair"
    moved = {m.adapter for m in r.moves}
    assert moved and moved <= hot
    # the shed adapters are the hottest of the GPU
    rate = {a.id: a.rate for a in new}
    kept = set(hot) - moved
    assert min(rate[i] for i in moved) >= max(rate[i] for i in kept) - 1e-12


def test_new_adapters_are_added_without_moves(profile, day0) -> None:
    ads, _, p0 = day0
    extra = [Adapter(f"n{i}", 8, 0.05) for i in range(5)]
    problem = _problem(profile, [*ads, *extra])
    r = replan(problem, _deployed(p0, ads), _fresh(problem))
    _check_safe(problem, r)
    assert r.moves == ()
    assert r.added == tuple(f"n{i}" for i in range(5))
    # place sizes max_cpu_loras to the adapters: the first addition restarts one server, which
    # gets room (25%) for the others, so they need no second restart
    assert len(r.restarted_gpus) == 1
    g = dict(zip(r.names, r.placement.servers, strict=True))[r.restarted_gpus[0]]
    assert g.max_cpu_loras >= len(g.adapters)
    assert {"n0", "n4"} <= {a.id for a in g.adapters}


def test_a_gpu_whose_adapters_all_left_is_freed(profile, day0) -> None:
    ads, _, p0 = day0
    dep = _deployed(p0, ads)
    gone = set(dep.servers[-1].adapters)
    problem = _problem(profile, [a for a in ads if a.id not in gone])
    r = replan(problem, dep, _fresh(problem))
    _check_safe(problem, r)
    assert dep.servers[-1].name in r.freed_gpus
    assert set(r.removed) == gone


def test_a_fleet_above_the_cap_is_drained(profile, day0) -> None:
    ads, _, p0 = day0
    low = [dataclasses.replace(a, rate=a.rate * 0.4) for a in ads]
    problem = _problem(profile, low)
    fresh = _fresh(problem)
    assert fresh.gpus < p0.gpus
    r = replan(problem, _deployed(p0, ads), fresh)
    _check_safe(problem, r)
    assert r.placement.gpus <= fresh.gpus
    assert len(r.freed_gpus) >= p0.gpus - fresh.gpus
    assert len(r.moves) > 0
    # with one extra GPU allowed, fewer adapters move
    r2 = replan(problem, _deployed(p0, ads), fresh, extra_gpus=1)
    assert len(r2.moves) < len(r.moves)


def test_move_budget_and_move_cost(profile, day0) -> None:
    ads, _, p0 = day0
    low = [dataclasses.replace(a, rate=a.rate * 0.4) for a in ads]
    problem = _problem(profile, low)
    fresh = _fresh(problem)
    needed = len(replan(problem, _deployed(p0, ads), fresh).moves)
    with pytest.raises(ConfigError, match="max_moves"):
        replan(problem, _deployed(p0, ads), fresh, max_moves=needed - 1)
    assert len(replan(problem, _deployed(p0, ads), fresh, max_moves=needed).moves) == needed
    # a move cost of nearly nothing drains GPUs beyond the cap allowance
    loose = replan(problem, _deployed(p0, ads), fresh, extra_gpus=2)
    cheap = replan(problem, _deployed(p0, ads), fresh, extra_gpus=2, move_cost=1e-4)
    assert cheap.placement.gpus < loose.placement.gpus
    with pytest.raises(ConfigError, match="not both"):
        replan(problem, _deployed(p0, ads), fresh, max_moves=3, move_cost=0.1)


def test_a_split_adapter_keeps_its_replicas(profile) -> None:
    ads = [*make_adapters(30, 80.0, seed=1), Adapter("hot", 8, 60.0)]
    problem = _problem(profile, ads)
    p0 = _fresh(problem)
    dep = _deployed(p0, ads)
    assert len(dep.gpus_of()["hot"]) >= 2
    r = replan(problem, dep, p0)
    assert r.strategy == "unchanged"
    # hotter still: more replicas, the old ones kept
    hotter = [dataclasses.replace(a, rate=a.rate * (1.8 if a.id == "hot" else 1.0))
              for a in ads]
    problem2 = _problem(profile, hotter)
    r2 = replan(problem2, dep, _fresh(problem2), extra_gpus=2)
    _check_safe(problem2, r2)
    where = [n for n, g in zip(r2.names, r2.placement.servers, strict=True)
             if "hot" in {a.id for a in g.adapters}]
    assert set(dep.gpus_of()["hot"]) & set(where)
    assert len(where) > len(dep.gpus_of()["hot"])
    assert r2.strategy == "repair"


def test_bad_inputs(profile, day0) -> None:
    ads, problem, p0 = day0
    with pytest.raises(ConfigError, match="placed for model 'qwen"):
        check_model(_deployed(p0, ads, model="qwen-2.5-7b-instruct"), profile)
    doc = placement_dict(p0, {})
    doc["servers"][0]["max_loras"] = 4000
    with pytest.raises(ConfigError, match="another model"):
        check_model(parse_deployed(doc), profile)
    other = _problem(profile, [Adapter(f"z{i}", 8, 1.0) for i in range(5)])
    with pytest.raises(ConfigError, match="no adapter of the workload"):
        replan(other, _deployed(p0, ads), _fresh(other))
    with pytest.raises(ConfigError, match="extra_gpus"):
        replan(problem, _deployed(p0, ads), p0, extra_gpus=-1)
    for bad, msg in (({}, "not a placement"), ({"servers": []}, "no servers"),
                     ({"servers": [{"adapters": ["a"], "ranks": [8, 8], "max_loras": 1}]},
                      "ranks"),
                     ({"servers": [{"adapters": ["a", "a"], "ranks": [8, 8],
                                    "max_loras": 1}]}, "twice"),
                     ({"servers": [{"adapters": ["a"], "ranks": [8], "max_loras": 0}]},
                      "max_loras")):
        with pytest.raises(DataError, match=msg):
            parse_deployed(bad)


def test_replan_cli(tmp_path, monkeypatch, capsys) -> None:
    import json

    import loratwin.placement.predictor as predictor_mod
    from loratwin.workload.adapters import save_adapters_csv
    from tests.cli_run import run_cli

    monkeypatch.setattr(predictor_mod, "load_predictor",
                        lambda profile, surrogate=None: AnalyticPredictor())
    ads = make_adapters(40, 150.0, seed=4)
    w0 = save_adapters_csv(ads, tmp_path / "day0.csv")
    cur, nxt = tmp_path / "current.json", tmp_path / "next.json"
    assert run_cli(["place", str(w0), "--no-confirm", "--json", str(cur)]) == 0
    assert json.loads(cur.read_text())["profile"]["name"] == "llama-3.1-8b-instruct"
    capsys.readouterr()
    # the same workload: unchanged
    assert run_cli(["replan", str(cur), str(w0), "--no-confirm", "-o", str(nxt)]) == 0
    out = capsys.readouterr().out
    assert "replan (unchanged): 0 move(s)" in out
    doc = json.loads(nxt.read_text())
    assert doc["replan"]["strategy"] == "unchanged" and doc["replan"]["moves"] == []
    assert [s["name"] for s in doc["servers"]] == [f"gpu-{k}" for k in range(doc["gpus"])]
    # drifted, and with observed rates from a request log: the output chains
    new = drift_day(ads, DriftSpec(sigma=0.3), np.random.default_rng(0), 1)
    w1 = save_adapters_csv(new, tmp_path / "day1.csv")
    assert run_cli(["replan", str(nxt), str(w1), "--no-confirm", "-o", str(nxt)]) == 0
    doc = json.loads(nxt.read_text())
    assert sorted(i for s in doc["servers"] for i in s["adapters"]) == sorted(
        {a.id for a in new})
    log = tmp_path / "requests.csv"
    log.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                   f"0,{new[0].id},100,10\n100,{new[1].id},100,10\n")
    assert run_cli(["replan", str(nxt), str(w1), "--no-confirm",
                    "--rates-from-metrics", str(log)]) == 0
    assert "keep the workload's rates" in capsys.readouterr().out
    # bad inputs: one line each, exit 2
    qwen = tmp_path / "qwen.json"
    qwen.write_text(nxt.read_text().replace('"name": "llama-3.1-8b-instruct"',
                                            '"name": "qwen-2.5-7b-instruct"'))
    other = save_adapters_csv([Adapter("zz", 8, 1.0)], tmp_path / "other.csv")
    badlog = tmp_path / "bad.csv"
    badlog.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0,nope,1,1\n"
                      "9,nope,1,1\n")
    for args, msg in (([str(qwen), str(w1), "--model", "llama-3.1-8b-instruct"],
                       "placed for model 'qwen-2.5-7b-instruct'"),
                      ([str(nxt), str(other)], "no adapter of the workload"),
                      ([str(nxt), str(w1), "--rates-from-metrics", str(badlog)],
                       "not in the workload: nope"),
                      ([str(w1), str(w1)], "not valid JSON"),
                      ([str(nxt), str(w1), "-o", str(tmp_path)], "is a folder"),
                      ([str(nxt), str(w1), "--max-moves", "2", "--move-cost", "1"],
                       "not both")):
        assert run_cli(["replan", *args, "--no-confirm"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err and err.count("\n") == 1, err


def test_borderline_gpus_go_to_the_batch_twin_confirmation(profile, day0) -> None:
    """``replan`` takes the batch callback ``place`` uses (``twin_confirm``): every candidate
    GPU reaches it as a one-element batch, and a GPU it rejects is not kept as it is."""
    ads, _, p0 = day0
    dep = _deployed(p0, ads)
    hot = set(dep.servers[0].adapters)
    new = [dataclasses.replace(a, rate=a.rate * 1.6) if a.id in hot else a for a in ads]
    problem = _problem(profile, new)
    seen: list[int] = []

    def confirm(gpus):
        seen.append(len(gpus))
        return [True] * len(gpus)

    opts = dataclasses.replace(SearchOptions(), p_confirm=0.0)
    r = replan(problem, dep, _fresh(problem), extra_gpus=1, options=opts, confirm=confirm)
    _check_safe(problem, r)
    assert seen and set(seen) == {1}
    assert f"twin confirmations during re-planning: {len(seen)}" in r.placement.notes

    def reject_all(gpus):
        return [False] * len(gpus)

    # nothing passes the twin: no repaired GPU is kept, and the fresh placement (which
    # ``place`` confirmed with the same callback) is used, re-mapped onto the deployed GPUs
    r2 = replan(problem, dep, _fresh(problem), extra_gpus=1, options=opts, confirm=reject_all)
    assert r2.strategy == "fresh-remapped"
    assert any("using the fresh placement" in n for n in r2.notes)
