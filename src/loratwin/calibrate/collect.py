"""``loratwin profile collect``: run a calibration campaign against a live vLLM deployment.

:func:`run_campaign` measures the points of a :class:`~loratwin.calibrate.collect_plan.
CampaignPlan` and writes them, in the schema of ``../shared/data/profiles/<model>/``, into a
folder that ``loratwin profile fit`` reads:

* with ``--launch "vllm serve MODEL ... --lora-modules a=PATH ..."`` loratwin starts one
  server per :class:`ServerSpec` (the user's command with the campaign's LoRA flags and
  adapters), measures its points and stops it; a server that fails to start for lack of
  memory is a measured ``kv_capacity.csv`` row (``failure``), not an error;
* with ``--url`` only the running server's points are measured (no restarts).

Bursts are sized from two probes of each server (the decode step time of one sequence and
the time of one full prefill step), so that each lasts about ``point_s`` seconds on any
hardware. Finished points are never measured again (:func:`~loratwin.calibrate.
collect_rows.done_points`); the campaign stops before a point or a server start that would
exceed the budget, and a rerun continues where it stopped. ``campaign.json`` keeps what the
servers reported (version, KV blocks, start-up times, probes) and ``logs/`` their output.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.calibrate.collect_meta import write_meta
from loratwin.calibrate.collect_model import adapter_paths, adapter_rank, served_model, server_argv
from loratwin.calibrate.collect_plan import (
    FULL_BATCH,
    SWEEP_FILES,
    CampaignPlan,
    PlanOptions,
    ServerSpec,
    SweepPoint,
    launch_plan,
    url_plan,
)
from loratwin.calibrate.collect_rows import (
    EMPTY_COLUMNS,
    append_rows,
    burst_row,
    done_points,
    ensure_files,
    idle_row,
    kv_row,
    loading_row,
)
from loratwin.calibrate.frontend import IDLE_TTFT_FILE
from loratwin.errors import ConfigError, DataError
from loratwin.live.closed import closed_burst, scrape, sequential_ttft
from loratwin.live.errors import ServerError, StartupError
from loratwin.live.launcher import STARTUP_FAILURES, LaunchedServer, startup_failure

STATE_FILE = "campaign.json"
#: Largest burst, requests; bursts shorter than half the target are re-run this often, bigger.
MAX_BATCH = 4096
RESIZE_ATTEMPTS = 3
FRONTEND_BURST = 64  # requests of the first front-end burst; 8x more while it lasts < 1 s
FRONTEND_MIN_S = 1.0
RESIZE_BELOW = 0.75  # of the target duration
MAX_RESCALE = 4.0  # per attempt: step times are not linear in the batch
MEMORY_FAILURES = frozenset(reason for reason, _ in STARTUP_FAILURES)


@dataclass(frozen=True)
class CollectOptions:
    """How to run a campaign.

    Attributes
    ----------
    out_dir:
        The calibration folder (created; resumed when it holds a campaign of the same
        model).
    budget_min:
        Wall-clock budget in minutes; the campaign stops before work that would exceed it.
    point_s:
        Target duration of one burst, s.
    seed:
        Seed of the prompts.
    flags:
        ``max_num_seqs``, ``max_num_batched_tokens`` (and, with ``--url``,
        ``max_cpu_loras``, ``max_lora_rank``) the server runs with, when given.
    device:
        ``cpu``, ``cuda`` or ``auto`` (from the launched server's log).
    plan:
        Sizes of the plan.
    loading_repeats:
        Requests per adapter-loading pattern.
    """

    out_dir: Path
    budget_min: float = 60.0
    point_s: float = 10.0
    seed: int = 0
    model_name: str | None = None
    hf_config: Path | None = None
    flags: dict[str, int | None] = field(default_factory=dict)
    device: str = "auto"
    plan: PlanOptions = field(default_factory=PlanOptions)
    loading_repeats: int = 12
    startup_timeout_s: float = 900.0
    gpu_name: str | None = None
    gpu_memory_gib: float | None = None


@dataclass(frozen=True)
class CollectProgress:
    """Progress of a campaign: what runs now, points done of all, elapsed s of the budget."""

    phase: str
    done: int
    total: int
    elapsed_s: float
    budget_s: float


@dataclass(frozen=True)
class CampaignSummary:
    """Points measured now, points still to measure (a rerun continues), points skipped
    (their server failed to start: its memory error is the measurement), the folder."""

    measured: int
    pending: int
    skipped: int
    out_dir: Path
    stopped_by_budget: bool


# ----------------------------------------------------------------------------- state


def load_state(out_dir: Path) -> dict[str, Any]:
    """``campaign.json`` of a folder (``{}`` for a new campaign)."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None


def save_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write ``campaign.json`` atomically."""
    path = out_dir / STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1, default=str) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- context


@dataclass
class Campaign:
    """The state of one running campaign (the folder is the durable copy)."""

    opts: CollectOptions
    plan: CampaignPlan
    state: dict[str, Any]
    report: Callable[[CollectProgress], None]
    paths_by_rank: dict[int, Path] = field(default_factory=dict)
    base_argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    measured: int = 0
    stopped_by_budget: bool = False

    @property
    def budget_s(self) -> float:
        return self.opts.budget_min * 60.0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def fits(self, cost_s: float) -> bool:
        if self.elapsed() + cost_s > self.budget_s:
            self.stopped_by_budget = True
            return False
        return True

    def done(self) -> set[str]:
        return done_points(self.opts.out_dir) | set(self.state.get("done", []))

    def tick(self, phase: str) -> None:
        done = self.done()
        self.report(CollectProgress(phase, sum(p.point_id in done for p in self.plan.points),
                                    len(self.plan.points), self.elapsed(), self.budget_s))

    def prompt_seed(self) -> int:
        """A seed no earlier request of this campaign used: prompts never repeat, so vLLM's
        prefix cache (on by default from 0.32) never shortens a calibration request."""
        n = int(self.state.get("prompt_calls", 0))
        self.state["prompt_calls"] = n + 1
        return self.opts.seed * 1_000_003 + n

    def server_state(self, key: str) -> dict[str, Any]:
        return self.state.setdefault("servers", {}).setdefault(key, {})

    def save(self) -> None:
        save_state(self.opts.out_dir, self.state)


# ----------------------------------------------------------------------------- measuring


def _sized_output(c: Campaign, probe: dict[str, float], point: SweepPoint) -> int:
    if point.output:
        return point.output
    room = int(c.state["max_model_len"]) - point.input - 1
    want = math.ceil(c.opts.point_s / max(probe["decode_step_s"], 1e-4))
    return int(min(max(want, 16), room))


def _sized_batch(c: Campaign, probe: dict[str, float], point: SweepPoint) -> int:
    if point.batch == FULL_BATCH:
        return int(c.state["max_num_seqs"])
    if point.batch:
        return point.batch
    budget = int(c.state["max_num_batched_tokens"])
    want = math.ceil(c.opts.point_s / max(probe["prefill_step_s"], 1e-4) * budget / point.input)
    return int(min(max(want, 4), MAX_BATCH))


def _round_robin(server: ServerSpec, k: int, n: int) -> list[str]:
    """Request i goes to adapter ``c{i mod k}`` (``adapter_assignment = round_robin``)."""
    return [server.adapter_names[i % k] for i in range(n)]


async def _probe(c: Campaign, url: str, first: str) -> dict[str, float]:
    budget_tokens, max_model_len = int(c.state["max_num_batched_tokens"]), int(
        c.state["max_model_len"])
    await sequential_ttft(url, [first], 8, seed=c.prompt_seed())  # warm the path
    log_itl = await closed_burst(url, [first], 1, 64, seed=c.prompt_seed())
    p = min(budget_tokens, max_model_len - 2)
    ttft = await sequential_ttft(url, [first] * 3, p, seed=c.prompt_seed())
    return {"decode_step_s": log_itl.mean_itl_ms / 1e3, "prefill_step_s": float(np.min(ttft)),
            "prefill_probe_tokens": p}


async def _burst_point(c: Campaign, url: str, server: ServerSpec, point: SweepPoint,
                       model: str, probe: dict[str, float]) -> None:
    out = _sized_output(c, probe, point)
    batch = _sized_batch(c, probe, point)
    k = point.adapters if server.enable_lora else 0
    if k:  # the replay starts with these adapters loaded, the last max_loras in slots
        await sequential_ttft(url, list(server.adapter_names[:k]), 4, seed=c.prompt_seed())
    for attempt in range(RESIZE_ATTEMPTS):
        models = _round_robin(server, k, batch) if k else [model] * batch
        res = await closed_burst(url, models, point.input, out, seed=c.prompt_seed())
        # too short for the fit (step times change with the load): scale up once more
        scale = min(c.opts.point_s / max(res.duration_s, 1e-3), MAX_RESCALE)
        if res.duration_s >= RESIZE_BELOW * c.opts.point_s or attempt == RESIZE_ATTEMPTS - 1:
            break
        new_out = _sized_output(c, {"decode_step_s": res.duration_s / max(out, 1)}, point)
        new_batch = batch if point.batch else int(min(math.ceil(batch * scale), MAX_BATCH))
        if (new_out, new_batch) == (out, batch):
            break
        out, batch = new_out, new_batch
    row = burst_row(c.state["model"], point, server, res, batch=batch, output=out,
                    max_num_seqs=int(c.state["max_num_seqs"]),
                    kv_tokens=c.server_state(server.key).get("kv_cache_tokens"))
    append_rows(c.opts.out_dir / SWEEP_FILES[point.sweep], [row])


async def _loading_point(c: Campaign, url: str, server: ServerSpec, point: SweepPoint) -> None:
    names, rank = server.adapter_names, server.adapter_ranks[0]
    loras, cpu, reps = server.max_loras, server.max_cpu_loras, c.opts.loading_repeats
    await sequential_ttft(url, list(names[:loras + 1]), 8, seed=c.prompt_seed())
    hit = (await sequential_ttft(url, [names[0]] * (reps + 1), 8, seed=c.prompt_seed()))[1:]
    cpu_t: list[float] = []
    if len(names) > loras:  # (a running server may register too few names to cycle)
        cyc = [names[i % (loras + 1)] for i in range(reps + loras + 1)]
        cpu_t = (await sequential_ttft(url, cyc, 8, seed=c.prompt_seed()))[loras + 1:]
    disk_t: list[float] = []
    if len(names) > cpu:
        cyc = [names[i % (cpu + 1)] for i in range(reps + cpu + 1)]
        disk_t = (await sequential_ttft(url, cyc, 8, seed=c.prompt_seed()))[cpu + 1:]
    h = float(np.median(hit))
    m = float(np.median(cpu_t)) if cpu_t else h
    row = loading_row(c.state["model"], point, server, rank,
                      [max(t - h, 0.0) * 1e3 for t in cpu_t],
                      [max(t - m, 0.0) * 1e3 for t in disk_t])
    append_rows(c.opts.out_dir / SWEEP_FILES["loading"], [row])
    append_rows(c.opts.out_dir / IDLE_TTFT_FILE, [idle_row(point, server, rank, 8, h * 1e3)])


async def _frontend_point(c: Campaign, url: str, point: SweepPoint, model: str) -> None:
    """Bursts of 1-token requests; their duration per request is the API server's time."""
    n = FRONTEND_BURST
    while True:
        res = await closed_burst(url, [model] * n, 1, 1, seed=c.prompt_seed())
        if res.duration_s >= FRONTEND_MIN_S or n >= MAX_BATCH:
            break
        n = min(n * 8, MAX_BATCH)
    append_rows(c.opts.out_dir / SWEEP_FILES["frontend"], [{
        "point_id": point.point_id, "num_prompts": n, "duration_s": res.duration_s,
        "n_sched_steps": res.n_steps, "per_request_ms": res.duration_s / n * 1e3}])


def _kv_point(c: Campaign, server: ServerSpec, point: SweepPoint, failure: str | None = None,
              available_gib: float | None = None) -> None:
    tokens = c.server_state(server.key).get("kv_cache_tokens")
    if not server.enable_lora:  # the no-LoRA size goes to meta.json
        c.state.setdefault("done", []).append(point.point_id)
        c.save()
        return
    append_rows(c.opts.out_dir / SWEEP_FILES["kv"], [kv_row(
        c.state["model"], point, server, None if failure else tokens, failure,
        int(c.state["max_model_len"]), available_gib)])


async def _server_facts(c: Campaign, url: str, server: ServerSpec, log_text: str) -> None:
    from loratwin.live.client import check_server

    first = server.adapter_names[0] if server.enable_lora else None
    info = await check_server(url, [first] if first else [])
    if first:
        await sequential_ttft(url, [first], 4, seed=c.prompt_seed())  # lora_requests_info appears
    _, facts = await scrape(url)
    st = c.server_state(server.key)
    st.update(kv_cache_tokens=facts.kv_cache_tokens, block_size=facts.block_size,
              num_gpu_blocks=facts.num_gpu_blocks, max_loras_reported=facts.max_loras,
              gpu_memory_utilization=facts.gpu_memory_utilization,
              enable_prefix_caching=facts.enable_prefix_caching)
    c.state.setdefault("vllm_version", info.get("version"))
    c.state.setdefault("base_model", info.get("base_model"))
    c.state.setdefault("max_model_len", info.get("max_model_len"))
    if c.state.get("device") in (None, "auto"):
        c.state["device"] = "cpu" if "CPU KV cache size" in log_text else (
            "cuda" if "GPU KV cache size" in log_text else None)
    _fill_defaults(c)
    if server.enable_lora and facts.max_loras not in (None, server.max_loras):
        raise ServerError(url, f"reports max_lora={facts.max_loras}, the campaign started it "
                               f"with --max-loras {server.max_loras}")
    c.save()


async def _measure_server(c: Campaign, url: str, server: ServerSpec, log_text: str) -> None:
    """Every pending point of one (running) server."""
    await _server_facts(c, url, server, log_text)
    st = c.server_state(server.key)
    base = c.state.get("base_model") or ""
    first = server.adapter_names[0] if server.enable_lora else base
    pending = [p for p in c.plan.points_of(server.key) if p.point_id not in c.done()]
    bursts = [p for p in pending if p.sweep in ("decode", "prefill", "lora")]
    if bursts and "probe" not in st:
        c.tick(f"{server.key}: probing step times")
        st["probe"] = await _probe(c, url, first)
        c.save()
    for point in pending:
        cost = 0.0 if point.sweep == "kv" else (30.0 if point.sweep in ("loading", "frontend")
                                                 else 1.5 * c.opts.point_s + 5.0)
        if not c.fits(cost):
            return
        c.tick(f"{point.point_id}")
        if point.sweep == "kv":
            _kv_point(c, server, point)
        elif point.sweep == "loading":
            await _loading_point(c, url, server, point)
        elif point.sweep == "frontend":
            await _frontend_point(c, url, point, first)
        else:
            await _burst_point(c, url, server, point, first, st["probe"])
        c.measured += 1


# ----------------------------------------------------------------------------- servers


def _launch_server(c: Campaign, server: ServerSpec) -> None:
    assert c.base_argv is not None
    argv = server_argv(c.base_argv, server, c.paths_by_rank)
    log = c.opts.out_dir / "logs" / f"{server.key}.log"
    launched = LaunchedServer(argv, log, env=c.env, startup_timeout_s=c.opts.startup_timeout_s)
    c.tick(f"starting server {server.key}")
    try:
        launched.start()
    except StartupError as exc:
        if exc.reason not in MEMORY_FAILURES:
            raise
        fail = startup_failure(launched.log_text())
        c.server_state(server.key).update(failure=exc.reason)
        for p in c.plan.points_of(server.key):
            if p.sweep == "kv" and p.point_id not in c.done():
                _kv_point(c, server, p, exc.reason, fail.kv_available_gib if fail else None)
        c.save()
        return
    try:
        c.server_state(server.key)["startup_s"] = launched.startup_s
        asyncio.run(_measure_server(c, launched.url, server, launched.log_text()))
    finally:
        launched.stop()


def _startup_cost(c: Campaign) -> float:
    times = [s.get("startup_s") for s in c.state.get("servers", {}).values()]
    times = [t for t in times if isinstance(t, int | float)]
    return max(times) if times else 120.0


def run_servers(c: Campaign, url: str | None) -> None:
    """Measure every server of the plan that has pending points."""
    for server in c.plan.servers:
        pending = [p for p in c.plan.points_of(server.key) if p.point_id not in c.done()]
        if not pending or c.server_state(server.key).get("failure"):
            continue
        if server.existing:
            assert url is not None
            asyncio.run(_measure_server(c, url, server, ""))
        elif c.fits(_startup_cost(c) + 30.0):
            _launch_server(c, server)
        if c.stopped_by_budget:
            return


# ----------------------------------------------------------------------------- entry


def _adapters_of_command(argv: list[str]) -> dict[int, Path]:
    paths = adapter_paths(argv)
    if not paths:
        raise ConfigError("the command needs --lora-modules with at least one adapter "
                          "(name=path) for the LoRA sweeps", field="launch")
    by_rank: dict[int, Path] = {}
    for path in paths.values():
        by_rank.setdefault(adapter_rank(path), path)
    return by_rank


def prepare_launch(argv: list[str], opts: CollectOptions) -> tuple[CampaignPlan, dict[int, Path],
                                                                   Path]:
    """Plan, adapter files per rank and ``config.json`` of a ``--launch`` campaign.

    Raises
    ------
    ConfigError, DataError
        No model or adapter in the command, unreadable adapter or model config.
    """
    by_rank = _adapters_of_command(argv)
    config = opts.hf_config or Path(served_model(argv)) / "config.json"
    if not config.is_file():
        raise ConfigError(f"no config.json at {config}; pass --hf-config PATH", field="hf_config")
    return launch_plan(sorted(by_rank), opts.plan), by_rank, config


def _check_resume(out_dir: Path, state: dict[str, Any], model: str) -> None:
    if state and state.get("model") not in (None, model):
        raise DataError(f"{out_dir} holds a campaign of {state['model']!r}, not {model!r}; "
                        "choose another --out")


def run_campaign(
    opts: CollectOptions, *, launch: list[str] | None = None, env: dict[str, str] | None = None,
    url: str | None = None, url_server: ServerSpec | None = None, config_json: Path | None = None,
    report: Callable[[CollectProgress], None] = lambda p: None,
) -> CampaignSummary:
    """Run (or resume) a campaign (see the module docstring) and write ``meta.json``.

    Give ``launch`` (the user's ``vllm serve`` command) or ``url`` with the running server's
    :class:`ServerSpec` (:func:`loratwin.calibrate.collect_url.url_server_spec`).

    Raises
    ------
    ConfigError, DataError
        Bad command or options, or a folder holding another model's campaign.
    ServerError
        A server could not be reached or failed a request (finished points stay written).
    """
    if (launch is None) == (url is None):
        raise ConfigError("give exactly one of --launch and --url", field="launch")
    out = opts.out_dir
    paths_by_rank: dict[int, Path] = {}
    if launch is not None:
        plan, paths_by_rank, config_json = prepare_launch(launch, opts)
    else:
        assert url_server is not None
        plan = url_plan(url_server, opts.plan)
    assert config_json is not None
    model = opts.model_name or Path(served_model(launch) if launch else str(
        config_json.parent)).name.lower()
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    state = load_state(out)
    _check_resume(out, state, model)
    state.update(model=model, config_json=str(config_json),
                 max_num_seqs=opts.flags.get("max_num_seqs") or state.get("max_num_seqs"),
                 max_num_batched_tokens=opts.flags.get("max_num_batched_tokens")
                 or state.get("max_num_batched_tokens"),
                 point_s=opts.point_s, target="launch" if launch else f"url {url}")
    if opts.device != "auto":
        state["device"] = opts.device
    c = Campaign(opts, plan, state, report, paths_by_rank, launch, dict(env or {}))
    try:
        run_servers(c, url)
    finally:
        c.save()
        ensure_files(out, {name: list(EMPTY_COLUMNS) for name in
                           (SWEEP_FILES["decode"], SWEEP_FILES["prefill"], SWEEP_FILES["lora"])})
        write_meta(out, c.state, plan, opts)
    failed = {k for k, v in c.state.get("servers", {}).items() if v.get("failure")}
    left = [p for p in plan.points if p.point_id not in c.done()]
    skipped = sum(p.server in failed for p in left)
    return CampaignSummary(c.measured, len(left) - skipped, skipped, out, c.stopped_by_budget)


def _fill_defaults(c: Campaign) -> None:
    """vLLM's ``max_num_seqs`` / ``max_num_batched_tokens`` defaults for the OpenAI server
    (``vllm/engine/arg_utils.py`` ``get_batch_defaults``) where the user gave none."""
    from loratwin.live.flags import DEFAULTS, command_flags

    given = command_flags(c.base_argv) if c.base_argv else {}
    dev = c.state.get("device") or "cuda"
    d = DEFAULTS["cpu" if dev == "cpu" else "gpu"]
    for k in ("max_num_seqs", "max_num_batched_tokens"):
        if not c.state.get(k):
            c.state[k] = given.get(k) or d[k]
