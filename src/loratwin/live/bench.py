"""``loratwin bench``: one benchmark of a live vLLM server, written for ``loratwin validate``.

:func:`run_bench` checks the output folder, (optionally) starts the server, checks that it
serves every adapter of the workload, sends one test request (as ``benchmark_serving``
does), reads the server's flags (:mod:`.flags`), then replays the workload over the window
while sampling ``/metrics``, and writes into the output folder

* ``requests.parquet``: one row per request (:func:`loratwin.live.row.records_frame`);
* ``timeseries.parquet``: one row per ``/metrics`` sample;
* ``trace.csv`` + ``adapters.csv``: the exact requests of the window in loratwin's trace
  format and the adapters (id, rank, rate), which the row points to;
* ``run.csv``: one row in the schema of ``real_runs/<model>.csv`` (:mod:`.row`);
* ``server.log`` when loratwin launched the server.

Everything measured is written also when the run stops early: Ctrl-C (status
``interrupted``) or a failed request (status ``failed``, then :class:`ServerError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from loratwin.errors import ConfigError, DataError
from loratwin.live.client import (
    OK,
    PlannedRequest,
    RequestRecord,
    RunLog,
    check_server,
    run_requests,
)
from loratwin.live.errors import ServerError, StartupError
from loratwin.live.flags import ResolvedFlags, command_flags, resolve_flags
from loratwin.live.launcher import STARTUP_FAILURES, LaunchedServer
from loratwin.live.metrics import (
    MetricsSnapshot,
    ServerFacts,
    merge_facts,
    parse_samples,
    server_facts,
    snapshot,
)
from loratwin.live.row import records_frame, summarise_run, timeseries_frame
from loratwin.live.workload import BenchWorkload
from loratwin.workload.adapters import save_adapters_csv
from loratwin.workload.trace import save_trace_csv
from loratwin.workload.types import Requests

OUTPUT_FILES = ("run.csv", "requests.parquet", "timeseries.parquet", "trace.csv",
                "adapters.csv")
#: Start-up failures that make a ``memory_error`` row (the real runs' status).
MEMORY_FAILURES = frozenset(reason for reason, _ in STARTUP_FAILURES)


@dataclass(frozen=True)
class BenchOptions:
    """How to run one benchmark.

    Attributes
    ----------
    out_dir:
        Output folder (created; must not hold a previous ``run.csv``).
    url:
        Base URL of a running server, or ``None`` with ``launch``.
    launch:
        A ``vllm serve`` command line to start (and stop at the end) instead of ``url``.
    launch_env:
        Extra environment of the launched server.
    flags:
        ``--max-loras`` and friends as given on the command line (``None`` = not given).
    max_concurrency:
        Most requests in flight at once.
    max_requests:
        Refuse workloads with more requests in the window than this.
    scrape_interval_s:
        Period of the ``/metrics`` samples, s.
    model_name:
        The row's ``model`` (default: the server's base model id).
    group, experiment:
        The row's ``group`` and ``experiment`` labels.
    device:
        ``auto``, ``cpu`` or ``cuda``: whose vLLM defaults fill the flags nobody stated
        (:data:`loratwin.live.flags.DEFAULTS`; ``max_num_seqs`` is 128 on the CPU backend,
        256 on a GPU). ``auto`` reads the launched server's log; a ``--url`` server cannot be
        asked, so ``auto`` means ``cuda`` there.
    """

    out_dir: Path
    url: str | None = None
    launch: Sequence[str] | None = None
    launch_env: dict[str, str] = field(default_factory=dict)
    flags: dict[str, int | None] = field(default_factory=dict)
    max_concurrency: int = 1024
    max_requests: int = 200_000
    scrape_interval_s: float = 1.0
    model_name: str | None = None
    group: str = "bench"
    experiment: str = ""
    device: str = "auto"


@dataclass(frozen=True)
class Progress:
    """What :func:`run_bench` reports while it runs (elapsed s of the window, counts)."""

    phase: str
    elapsed_s: float
    duration_s: float
    sent: int
    finished: int
    planned: int


@dataclass(frozen=True)
class BenchResult:
    """The row written to ``run.csv``, the output folder and the flags of the row."""

    row: dict[str, Any]
    out_dir: Path
    flags: ResolvedFlags | None = None


def check_out_dir(out_dir: Path) -> None:
    """Check, before any work, that ``out_dir`` can hold a new benchmark (nothing is created).

    Raises
    ------
    DataError
        It is a file, holds ``run.csv`` already, or neither it nor its nearest existing
        ancestor is a writable folder.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder is a file: {out_dir}")
    if (out_dir / "run.csv").exists():
        raise DataError(f"{out_dir} already holds a benchmark (run.csv); choose another --out")
    probe = out_dir.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"cannot write to {out_dir} ({probe} is not a writable folder)")


async def _scrape(client: httpx.AsyncClient, url: str, t0: float
                  ) -> tuple[MetricsSnapshot, ServerFacts]:
    resp = await client.get(f"{url}/metrics")
    if resp.status_code != 200:
        raise ServerError(url, f"/metrics answered HTTP {resp.status_code}")
    samples = parse_samples(resp.text)
    return snapshot(samples, time.perf_counter() - t0), server_facts(samples)


@dataclass
class _Scraper:
    """Samples ``/metrics`` every ``interval_s`` until stopped (state of one run).

    Inside the window the loop only fetches the text (``raw``); :meth:`parse_raw` parses it
    after the window. Parsing vLLM's exposition (about 60 KB, 450 samples for a LoRA server)
    is pure Python and takes 30 ms of CPU, and on a busy host several hundred ms of wall
    time: done in the event loop that timestamps the streamed chunks, it held back every
    chunk and every send behind it, which showed up as TTFT (measured on the CPU server:
    sends up to 2.6 s late, responses delivered in one burst).
    """

    url: str
    interval_s: float
    t0: float
    snaps: list[MetricsSnapshot] = field(default_factory=list)
    facts: ServerFacts = field(default_factory=ServerFacts)
    failures: int = 0
    raw: list[tuple[float, str]] = field(default_factory=list)

    async def once(self, client: httpx.AsyncClient) -> None:
        try:
            snap, facts = await _scrape(client, self.url, self.t0)
        except (httpx.HTTPError, ServerError, DataError):
            self.failures += 1
            return
        self.snaps.append(snap)
        self.facts = merge_facts(self.facts, facts)

    async def fetch(self, client: httpx.AsyncClient) -> None:
        """Fetch one exposition into ``raw`` without parsing it (see the class docstring)."""
        try:
            resp = await client.get(f"{self.url}/metrics")
        except httpx.HTTPError:
            self.failures += 1
            return
        if resp.status_code != 200:
            self.failures += 1
            return
        self.raw.append((time.perf_counter() - self.t0, resp.text))

    def parse_raw(self) -> None:
        """Parse the fetched texts into ``snaps`` (kept in time order) and the facts."""
        for t_s, text in self.raw:
            try:
                samples = parse_samples(text)
            except DataError:
                self.failures += 1
                continue
            self.snaps.append(snapshot(samples, t_s))
            self.facts = merge_facts(self.facts, server_facts(samples))
        self.raw.clear()
        self.snaps.sort(key=lambda s: s.t_s)

    async def loop(self, tick: Callable[[], None]) -> None:
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
            while True:
                start = time.perf_counter()
                await self.fetch(client)
                tick()
                await asyncio.sleep(max(self.interval_s - (time.perf_counter() - start), 0.0))


async def _test_request(url: str, model: str) -> None:
    """One short streamed request (``benchmark_serving``'s initial test)."""
    log = RunLog()
    await run_requests(url, [PlannedRequest(0, 0.0, model, 4, 2)], 120.0, seed=0,
                       max_concurrency=1, log=log)
    rec = log.records[0] if log.records else None
    if rec is None or rec.status != OK:
        what = rec.error if rec is not None else "not sent"
        raise ServerError(url, f"test request to model {model!r} failed: {what}")


async def probe_server(url: str, models: Sequence[str]) -> tuple[dict, ServerFacts]:
    """Check the server (:func:`check_server`), send a test request, read its facts."""
    info = await check_server(url, models)
    await _test_request(url, models[0])
    async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
        try:
            _, facts = await _scrape(client, url, time.perf_counter())
        except httpx.HTTPError as exc:
            raise ServerError(url, f"/metrics: {type(exc).__name__}") from None
    return info, facts


def _platform(log_text: str, device: str = "auto") -> str:
    """``cpu`` or ``gpu``: the user's ``device``, else what the server log shows."""
    if device != "auto":
        return "cpu" if device == "cpu" else "gpu"
    return "cpu" if "CPU KV cache size" in log_text or "device_config=cpu" in log_text else "gpu"


def _planned_tokens(planned: Sequence[PlannedRequest]) -> tuple[float, float, int]:
    return (float(sum(p.input_tokens for p in planned)),
            float(sum(p.output_tokens for p in planned)), len(planned))


def _check_lengths(planned: Sequence[PlannedRequest], max_model_len: int | None) -> None:
    if not max_model_len:
        return
    for p in planned:
        if p.input_tokens + p.output_tokens > max_model_len:
            raise ConfigError(
                f"request {p.index} needs {p.input_tokens} + {p.output_tokens} tokens, more "
                f"than the server's max_model_len {max_model_len}", field="lengths")


async def _measure(
    url: str, workload: BenchWorkload, planned: list[PlannedRequest], opts: BenchOptions,
    log: RunLog, scraper: _Scraper, report: Callable[[Progress], None],
) -> None:
    done = [0]

    def tick() -> None:
        report(Progress("benchmark", time.perf_counter() - scraper.t0, workload.duration_s,
                        len(log.records), done[0], len(planned)))

    def on_done(_: RequestRecord) -> None:
        done[0] += 1

    async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
        await scraper.once(client)  # baseline of the counters, before t = 0
    scraper.t0 = time.perf_counter()
    task = asyncio.create_task(scraper.loop(tick))
    try:
        await run_requests(url, planned, workload.duration_s, seed=workload.seed,
                           max_concurrency=opts.max_concurrency, log=log, on_done=on_done,
                           t0=scraper.t0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
            await scraper.once(client)
        scraper.parse_raw()


def build_row(
    workload: BenchWorkload, planned: Sequence[PlannedRequest], log: RunLog,
    snaps: Sequence[MetricsSnapshot], facts: ServerFacts, flags: ResolvedFlags | None,
    info: dict, opts: BenchOptions, status: str, detail: str, url: str,
) -> dict[str, Any]:
    """The ``run.csv`` row: identity and flags, then :func:`summarise_run`'s columns."""
    values = flags.values if flags else {}
    row: dict[str, Any] = {
        "model": opts.model_name or info.get("base_model") or "",
        "group": opts.group,
        "experiment": opts.experiment or opts.out_dir.name,
        "max_lora_rank": values.get("max_lora_rank"),
        "max_loras": values.get("max_loras"),
        "max_cpu_loras": values.get("max_cpu_loras"),
        "max_num_seqs": values.get("max_num_seqs"),
        "max_num_batched_tokens": values.get("max_num_batched_tokens"),
        "status": status,
        "status_detail": detail,
    }
    row.update(summarise_run(
        log.records, snaps, duration_s=workload.duration_s, adapters=workload.adapters,
        sum_rate_req_s=workload.sum_rate_req_s, planned_tokens=_planned_tokens(planned),
    ))
    row.update({
        "kv_cache_tokens": facts.kv_cache_tokens,
        "block_size": facts.block_size,
        "gpu_memory_utilization": facts.gpu_memory_utilization,
        "vllm_version": info.get("version"),
        "seed": workload.seed,
        "arrivals": workload.arrivals,
        "flags_source": flags.describe() if flags else "",
        "url": url,
        "trace_file": "trace.csv",
        "adapters_file": "adapters.csv",
    })
    return row


def write_outputs(out_dir: Path, workload: BenchWorkload, log: RunLog,
                  snaps: Sequence[MetricsSnapshot], row: dict[str, Any]) -> None:
    """Write the files of the module docstring (``run.csv`` last)."""
    ranks = {a.id: a.rank for a in workload.adapters}
    records_frame(log.records, ranks).to_parquet(out_dir / "requests.parquet", index=False)
    timeseries_frame(snaps).to_parquet(out_dir / "timeseries.parquet", index=False)
    r = workload.requests
    keep = r.arrival_s < workload.duration_s
    save_trace_csv(Requests(r.arrival_s[keep], r.adapter[keep], r.input_tokens[keep],
                            r.output_tokens[keep]),
                   [a.id for a in workload.adapters], out_dir / "trace.csv")
    save_adapters_csv(list(workload.adapters), out_dir / "adapters.csv")
    pd.DataFrame([row]).to_csv(out_dir / "run.csv", index=False)


def _write_memory_error(workload: BenchWorkload, planned: Sequence[PlannedRequest],
                        opts: BenchOptions, command: dict[str, int], exc: StartupError) -> None:
    """The row of a server that did not start for lack of memory (status ``memory_error``)."""
    flags = resolve_flags(facts=ServerFacts(), command=command, options=opts.flags,
                          workload=workload.declared_flags, platform=_platform("", opts.device))
    row = build_row(workload, planned, RunLog(), [], ServerFacts(), flags, {}, opts,
                    "memory_error", f"{exc.reason}: {exc.detail}", exc.url)
    write_outputs(opts.out_dir, workload, RunLog(), [], row)


def _connect(
    workload: BenchWorkload, planned: Sequence[PlannedRequest], opts: BenchOptions,
    stack: contextlib.ExitStack, report: Callable[[Progress], None],
) -> tuple[str, dict[str, int], str]:
    """The server's URL, the flags of its launch command and its platform (``cpu``/``gpu``);
    starts the server (stopped when ``stack`` closes) when ``opts.launch`` is given."""
    if opts.launch is None:
        assert opts.url is not None
        return opts.url, {}, _platform("", opts.device)
    argv = list(opts.launch)
    command = command_flags(argv)
    created = not opts.out_dir.exists()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    server = LaunchedServer(argv, opts.out_dir / "server.log", env=opts.launch_env)
    report(Progress("starting server", 0.0, workload.duration_s, 0, 0, len(planned)))
    try:
        stack.enter_context(server)
    except StartupError as exc:
        if exc.reason in MEMORY_FAILURES:
            _write_memory_error(workload, planned, opts, command, exc)
        elif exc.reason == "exec":  # nothing ran: leave nothing behind
            server.log_path.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    opts.out_dir.rmdir()
        raise
    return server.url, command, _platform(server.log_text(), opts.device)


def run_bench(
    workload: BenchWorkload, opts: BenchOptions,
    report: Callable[[Progress], None] = lambda p: None,
) -> BenchResult:
    """Run one benchmark (see the module docstring) and write its outputs.

    Raises
    ------
    ConfigError
        Too many requests, a request longer than the server's ``max_model_len``, or flags
        that contradict the server.
    DataError
        The output folder is not usable.
    ServerError
        The server is down, does not serve an adapter, or a request failed (after the
        measured part is written).
    KeyboardInterrupt
        After writing what was measured (row status ``interrupted``).
    """
    if (opts.url is None) == (opts.launch is None):
        raise ConfigError("give exactly one of --url and --launch", field="url")
    check_out_dir(opts.out_dir)
    planned = workload.planned()
    if len(planned) > opts.max_requests:
        raise ConfigError(f"{len(planned):,} requests in the window, more than "
                          f"--max-requests {opts.max_requests:,}", field="max_requests")
    with contextlib.ExitStack() as stack:
        url, command, platform = _connect(workload, planned, opts, stack, report)
        models = list(dict.fromkeys(p.model for p in planned))
        info, facts = asyncio.run(probe_server(url, models))
        _check_lengths(planned, info.get("max_model_len"))
        flags = resolve_flags(facts=facts, command=command, options=opts.flags,
                              workload=workload.declared_flags, platform=platform)
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        log = RunLog()
        scraper = _Scraper(url, opts.scrape_interval_s, time.perf_counter(), facts=facts)
        status, detail = "ok", ""
        try:
            asyncio.run(_measure(url, workload, planned, opts, log, scraper, report))
        except KeyboardInterrupt:
            status, detail = "interrupted", "stopped by Ctrl-C; the window was not completed"
            raise
        finally:
            if log.first_error is not None:
                status = "failed"
                detail = (f"request {log.first_error.index} (model {log.first_error.model!r}): "
                          f"{log.first_error.error}")
            scraper.parse_raw()  # what an interrupted window fetched
            row = build_row(workload, planned, log, scraper.snaps, scraper.facts, flags, info,
                            opts, status, detail, url)
            write_outputs(opts.out_dir, workload, log, scraper.snaps, row)
        if log.first_error is not None:
            raise ServerError(url, f"{detail}; the measured part is in {opts.out_dir}")
    return BenchResult(row, opts.out_dir, flags)
