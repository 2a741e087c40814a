"""``loratwin profile collect`` against fake vLLM servers (plan, rows, resume, budget, fit)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest

from loratwin.calibrate import fit as fit_module
from loratwin.calibrate.collect import CampaignSummary, CollectOptions, run_campaign
from loratwin.calibrate.collect_model import (
    adapter_paths,
    model_shapes,
    served_model,
    server_argv,
)
from loratwin.calibrate.collect_plan import FULL_BATCH, PlanOptions, launch_plan, slot_ranks
from loratwin.calibrate.collect_url import url_server_spec
from loratwin.live.launcher import flag_value
from tests.cli_run import run_cli
from tests.live.fakevllm import FakeVllm

CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128,
          "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
          "num_hidden_layers": 2, "vocab_size": 512, "torch_dtype": "bfloat16"}


def _model(tmp: Path, ranks: dict[str, int]) -> dict[str, str]:
    (tmp / "base").mkdir()
    (tmp / "base" / "config.json").write_text(json.dumps(CONFIG))
    roots = {"tiny": str(tmp / "base")}
    for name, r in ranks.items():
        d = tmp / f"ad-{name}"
        d.mkdir()
        (d / "adapter_config.json").write_text(json.dumps({"r": r}))
        roots[name] = str(d)
    return roots


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_model_shapes_and_command_helpers(tmp_path: Path) -> None:
    roots = _model(tmp_path, {"a": 8, "b": 16})
    shapes, kv = model_shapes(Path(roots["tiny"]) / "config.json")
    assert shapes["q_size"] == 128 and shapes["kv_size"] == 64 and shapes["num_layers"] == 2
    assert kv == 2 * 2 * 64 * 2  # K and V, layers, KV dim, bf16
    argv = ["vllm", "serve", roots["tiny"], "--enable-lora", "--lora-modules",
            f"a={roots['a']}", json.dumps({"name": "b", "path": roots["b"]}), "--port", "1"]
    assert served_model(argv) == roots["tiny"]
    assert {k: str(v) for k, v in adapter_paths(argv).items()} == {"a": roots["a"],
                                                                   "b": roots["b"]}
    plan = launch_plan([8, 16], PlanOptions())
    nolora, lora4, lora1 = plan.servers[:3]
    assert server_argv(argv, nolora, {})[:3] == argv[:3]
    assert flag_value(server_argv(argv, nolora, {}), "--enable-lora") is None
    lora = server_argv(argv, lora4, {16: Path(roots["b"]), 8: Path(roots["a"])})
    assert flag_value(lora, "--max-loras") == "4" and flag_value(lora, "--max-lora-rank") == "16"
    modules = flag_value(lora, "--lora-modules")
    assert isinstance(modules, list) and len(modules) == lora4.max_cpu_loras + 1
    assert (lora1.max_loras, lora1.max_lora_rank) == (1, 8)
    assert slot_ranks([16]) == (32, 16)


def test_launch_plan_shape() -> None:
    plan = launch_plan([8, 16], PlanOptions())
    keys = [s.key for s in plan.servers]
    assert keys[:3] == ["nolora", "lora-4-r16", "lora-1-r8"]
    for s in plan.servers[1:3]:
        # cycling over max_loras + 1 adapters hits the CPU cache, over all of them misses it
        assert s.max_cpu_loras >= s.max_loras + 1
        assert len(s.adapter_ranks) == s.max_cpu_loras + 1
    ids = [p.point_id for p in plan.points]
    assert len(ids) == len(set(ids))
    assert {"lora-4-r16/lora-k8", "lora-4-r16/loading", "kv-16-r8/kv"} <= set(ids)
    # one burst per server at its max_num_seqs (resolved when the point runs)
    full = {p.point_id: p for p in plan.points if p.batch == FULL_BATCH}
    assert set(full) == {"nolora/decode-bmax", "lora-4-r16/lora-bmax", "lora-1-r8/lora-bmax"}
    assert full["lora-4-r16/lora-bmax"].adapters == 4


#: A small plan: the fake's bursts cost seconds of wall time on a loaded machine.
SMALL = PlanOptions(decode_batches=(1, 4), prefill_inputs=(64, 128, 256, 512), lora_batch=4,
                    quick=True)


def _collect(fake: FakeVllm, out: Path, roots: dict[str, str], budget_min: float = 60.0
             ) -> CampaignSummary:
    opts = CollectOptions(out_dir=out, budget_min=budget_min, point_s=0.05, device="cpu",
                          flags={"max_cpu_loras": 4, "max_lora_rank": 8, "max_num_seqs": 64},
                          plan=SMALL, loading_repeats=2,
                          hf_config=Path(roots["tiny"]) / "config.json")
    spec, config = url_server_spec(fake.url, opts.flags, opts.hf_config)
    return run_campaign(opts, url=fake.url, url_server=spec, config_json=config)


@pytest.fixture
def url_fake(tmp_path: Path):
    roots = _model(tmp_path, {f"a{i}": 8 for i in range(5)})
    fake = FakeVllm(models=tuple(f"a{i}" for i in range(5)), roots=roots, token_s=0.002,
                    ttft_s=0.005).start()
    yield fake, roots
    fake.stop()


def test_url_campaign_budget_resume_and_fit(url_fake, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake, roots = url_fake
    out = tmp_path / "cal"
    first = _collect(fake, out, roots, budget_min=0.01)  # 0.6 s: the budget stops it early
    assert first.stopped_by_budget and first.pending > 0
    summary = _collect(fake, out, roots)  # resumed to the end
    assert summary.pending == 0 and not summary.stopped_by_budget
    assert summary.measured == first.pending
    lora = pd.read_csv(out / "lora_overhead_sweep.csv")
    # the --url plan: single-adapter decode/prefill sweeps plus the overhead points
    assert {"server/decode-b1", "server/prefill-p512", "server/lora-k2",
            "server/lora-k4", "server/decode-bmax"} <= set(lora["point_id"])
    # the full-batch bursts ran max_num_seqs (64 here) sequences
    full = lora[lora["point_id"].isin(["server/decode-bmax", "server/lora-bmax"])]
    assert len(full) == 2 and (full["num_prompts"] == 64).all()
    assert (lora["lora_enabled"]).all() and (lora["max_loras"] == 2).all()
    assert (lora["adapter_assignment"] == "round_robin").all()
    assert (lora["status"] == "ok").all() and (lora["duration_s"] > 0).all()
    assert (lora["n_sched_steps"] > 0).all()
    assert len(pd.read_csv(out / "decode_sweep.csv")) == 0  # no restarts: no no-LoRA server
    load = pd.read_csv(out / "adapter_loading.csv")
    assert len(load) == 1 and load.loc[0, "n_disk_loads"] > 0  # 5 adapters > 4 CPU slots
    assert len(pd.read_csv(out / "ttft_idle.csv")) == 1
    assert pd.read_csv(out / "frontend_rate.csv").loc[0, "per_request_ms"] > 0
    kv = pd.read_csv(out / "kv_capacity.csv")
    assert kv.loc[0, "kv_cache_tokens"] == 4096 and kv.loc[0, "max_loras"] == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["profile_kind"] == "collected"
    assert meta["serving_engine"]["device"] == "cpu"
    assert meta["serving_engine"]["max_num_seqs_serving_runs"] == 64
    assert meta["architecture_shapes"]["hidden_size"] == 128
    # resumed: nothing measured again
    sent = len(fake.seen)
    assert _collect(fake, out, roots).measured == 0
    assert len(fake.seen) - sent <= 2  # the facts check only, no burst
    assert len(pd.read_csv(out / "lora_overhead_sweep.csv")) == len(lora)
    # profile fit takes the folder (the fake's bursts are short: allow them)
    monkeypatch.setattr(fit_module, "MIN_ENGINE_BOUND_DURATION_S", 0.0)
    prof = fit_module.fit_profile(out)
    assert prof.device == "cpu" and prof.profile_kind == "collected"
    assert prof.vllm_version == "0.32" and prof.block_size == 16
    assert prof.step.lora_empty_cta_s == 0.0 and prof.step.lora_work_cta_s == 0.0
    assert "frontend_latency" in prof.fit_report
    assert prof.frontend_per_request_s > 0  # from frontend_rate.csv
    assert prof.frontend_latency_s >= 0.0
    # no scheduler table: the skip-loop cost is the measured hosts' (not fitted, not 0)
    from loratwin.calibrate.prior import default_calibration_profiles
    hosts = [p.step.sched_per_walked_s for p in default_calibration_profiles()]
    assert prof.step.sched_per_walked_s == pytest.approx(sum(hosts) / len(hosts))
    assert "measured profiles" in prof.fit_report["scheduler_walk"]["source"]


def test_launch_campaign_restarts_and_memory_error(tmp_path: Path) -> None:
    roots = _model(tmp_path, {"a": 8, "b": 16})
    port = _free_port()
    argv = [sys.executable, "-m", "tests.live.fakevllm", "serve", roots["tiny"], "--port",
            str(port), "--fail-above-loras", "2", "--lora-modules", f"a={roots['a']}",
            f"b={roots['b']}"]
    out = tmp_path / "cal"
    opts = CollectOptions(out_dir=out, point_s=0.05, flags={"max_num_seqs": 64},
                          plan=PlanOptions(decode_batches=(1, 4), prefill_inputs=(64, 128),
                                           lora_batch=4, max_loras_grid=(4, 1), quick=True),
                          loading_repeats=2, startup_timeout_s=60)
    summary = run_campaign(opts, launch=argv)
    # lora-4-r16 did not start: its KV row holds the memory error, its other points skipped
    assert (summary.pending, summary.skipped) == (0, 6)  # k4, k8, bmax, prefill, loading, fe
    state = json.loads((out / "campaign.json").read_text())
    assert state["device"] == "cpu"  # read from the launched server's log
    assert state["servers"]["lora-4-r16"]["failure"] == "kv_cache_smaller_than_max_model_len"
    kv = pd.read_csv(out / "kv_capacity.csv")
    failed = kv[kv["point_id"] == "lora-4-r16/kv"].iloc[0]
    assert failed["failure"] == "kv_cache_smaller_than_max_model_len"
    assert failed["kv_available_gib"] == pytest.approx(0.5)
    decode = pd.read_csv(out / "decode_sweep.csv")  # the no-LoRA server: b1, b4, bmax
    assert list(decode["num_prompts"]) == [1, 4, 64]
    assert len(pd.read_csv(out / "prefill_sweep.csv")) == 2
    ok = kv[kv["point_id"] == "lora-1-r8/kv"].iloc[0]
    assert ok["kv_cache_tokens"] == 4096
    assert (out / "logs" / "nolora.log").is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["memory"]["kv_cache_note"] == "measured without LoRA"


def test_collect_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = _model(tmp_path, {"a": 8})
    cases = [
        ["profile", "collect", "--out", str(tmp_path / "o")],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--url", "x:1"],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--launch", "vllm serve 'x"],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--launch",
         f"vllm serve {roots['tiny']}"],  # no --lora-modules
        ["profile", "collect", "--out", str(tmp_path / "o"), "--launch", "vllm serve m "
         f"--lora-modules a={roots['a']}"],  # no config.json for model m
        ["profile", "collect", "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9"],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9",
         "--budget", "0"],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9",
         "--device", "tpu"],
        ["profile", "collect", "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9",
         "--max-loras-grid", "0,x"],
    ]
    for argv in cases:
        assert run_cli(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
    assert not (tmp_path / "o").exists()
