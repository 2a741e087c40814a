"""Calibration measurements on a live server: closed bursts and single-request probes.

A *closed burst* sends ``n`` requests at once (``request_rate = inf``, as the calibration runs
of ``../shared/data/profiles`` did) and waits for all of them; its duration is the time from
sending to the last token. Because every request is there from the start, the engine's
schedule does not depend on how long the steps take, which is what lets
``loratwin profile fit`` replay it exactly. ``/metrics`` is read before and after, so the
engine steps (``vllm:iteration_tokens_total``) and preemptions of the burst are known.

A *sequential probe* sends requests one after the other to an idle server and keeps each
TTFT: the adapter-load measurements compare such TTFTs between an adapter already in a slot,
one in the CPU cache only, and one that must be read from disk.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from loratwin.live.client import (
    OK,
    PlannedRequest,
    RequestRecord,
    RunLog,
    run_requests,
    stream_one,
)
from loratwin.live.errors import ServerError
from loratwin.live.metrics import (
    MetricsSnapshot,
    ServerFacts,
    parse_samples,
    server_facts,
    snapshot,
)


@dataclass(frozen=True)
class BurstResult:
    """What one closed burst measured (times in s or ms as named; NaN when not measured).

    Attributes
    ----------
    completed:
        Requests that finished.
    duration_s:
        From the first send to the last token.
    mean_input_tokens, mean_output_tokens:
        Per completed request, as the server counted them (``usage``).
    mean_ttft_ms, mean_itl_ms, mean_tpot_ms:
        Latencies over the completed requests (ITL: decode time per generated token).
    n_steps, preemptions:
        Increase of ``vllm:iteration_tokens_total_count`` / ``vllm:num_preemptions_total``.
    max_num_running:
        Largest ``vllm:num_requests_running`` sampled during the burst.
    """

    completed: int
    duration_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    mean_ttft_ms: float
    mean_itl_ms: float
    mean_tpot_ms: float
    n_steps: float
    preemptions: float
    max_num_running: float


async def scrape(url: str, t0: float = 0.0) -> tuple[MetricsSnapshot, ServerFacts]:
    """One ``/metrics`` reading of ``url`` (client time relative to ``t0``).

    Raises
    ------
    ServerError
        The server cannot be reached or answers with an error.
    """
    try:
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
            resp = await client.get(f"{url}/metrics")
    except httpx.HTTPError as exc:
        raise ServerError(url, f"/metrics: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise ServerError(url, f"/metrics answered HTTP {resp.status_code}")
    samples = parse_samples(resp.text)
    return snapshot(samples, time.perf_counter() - t0), server_facts(samples)


async def _sample_running(url: str, every_s: float, out: list[float]) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            snap, _ = await scrape(url)
        except ServerError:
            continue
        out.append(snap.num_requests_running)


def _delta(a: float, b: float) -> float:
    return b - a if math.isfinite(a) and math.isfinite(b) else math.nan


async def closed_burst(url: str, models: Sequence[str], input_tokens: int, output_tokens: int,
                       *, seed: int, timeout_s: float = 3600.0) -> BurstResult:
    """Send ``len(models)`` requests at once (request i to ``models[i]``) and wait for all.

    Raises
    ------
    ServerError
        A request failed, or not every request finished within ``timeout_s``.
    """
    before, _ = await scrape(url)
    reqs = [PlannedRequest(i, 0.0, m, input_tokens, output_tokens)
            for i, m in enumerate(models)]
    log = RunLog()
    running: list[float] = []
    sampler = asyncio.create_task(_sample_running(url, 1.0, running))
    try:
        await run_requests(url, reqs, timeout_s, seed=seed, max_concurrency=len(reqs), log=log)
    finally:
        sampler.cancel()
    after, _ = await scrape(url)
    if log.first_error is not None:
        raise ServerError(url, f"request to {log.first_error.model!r} failed: "
                               f"{log.first_error.error}")
    done = [r for r in log.records if r.status == OK]
    if len(done) < len(reqs):
        raise ServerError(url, f"{len(reqs) - len(done)} of {len(reqs)} requests did not "
                               f"finish within {timeout_s:g} s")
    start = min(r.send_s for r in done)
    pin = np.array([r.prompt_tokens or r.input_tokens for r in done], float)
    pout = np.array([r.completion_tokens or r.output_tokens for r in done], float)
    ttft = np.array([r.ttft_s for r in done])
    dec = np.array([r.latency_s - r.ttft_s for r in done])
    multi = pout > 1
    return BurstResult(
        completed=len(done),
        duration_s=float(max(r.finish_s for r in done) - start),
        mean_input_tokens=float(pin.mean()),
        mean_output_tokens=float(pout.mean()),
        mean_ttft_ms=float(ttft.mean() * 1e3),
        mean_itl_ms=float(dec[multi].sum() / (pout[multi] - 1).sum() * 1e3)
        if multi.any() else math.nan,
        mean_tpot_ms=float(np.mean(dec[multi] / (pout[multi] - 1)) * 1e3)
        if multi.any() else math.nan,
        n_steps=_delta(before.num_steps_total, after.num_steps_total),
        preemptions=_delta(before.num_preemptions_total, after.num_preemptions_total),
        max_num_running=max(running) if running else math.nan,
    )


async def sequential_ttft(url: str, models: Sequence[str], input_tokens: int,
                          output_tokens: int = 1, *, seed: int) -> list[float]:
    """Send one request per entry of ``models``, each after the previous finished (over one
    kept-alive connection); their TTFTs, s.

    Raises
    ------
    ServerError
        A request failed.
    """
    out: list[float] = []
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for i, m in enumerate(models):
            req = PlannedRequest(i, 0.0, m, input_tokens, output_tokens)
            rec = RequestRecord(i, 0.0, m, input_tokens, output_tokens)
            try:
                await stream_one(client, f"{url}/v1/completions", req, rec, seed,
                                 time.perf_counter())
            except (httpx.HTTPError, OSError) as exc:
                raise ServerError(url, f"request to {m!r} failed: {type(exc).__name__}"
                                  ) from None
            if rec.status != OK:
                raise ServerError(url, f"request to {m!r} failed: {rec.error}")
            out.append(rec.ttft_s)
    return out
