"""The benchmark's /metrics sampler parses nothing inside the window (issue 10: parsing
vLLM's exposition in the event loop that timestamps the streamed chunks delayed them)."""

from __future__ import annotations

import asyncio
import time

import pytest

from loratwin.live import bench
from tests.live.fakevllm import FakeVllm


def test_the_window_only_fetches_and_parse_raw_keeps_time_order(
        fake_vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    scraper = bench._Scraper(fake_vllm.url, 0.05, time.perf_counter())

    def no_parse(_: str) -> list:
        raise AssertionError("parsed inside the window")

    async def window() -> None:
        task = asyncio.create_task(scraper.loop(lambda: None))
        deadline = time.perf_counter() + 20.0  # a loaded host answers slowly
        while len(scraper.raw) < 2 and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with monkeypatch.context() as m:
        m.setattr(bench, "parse_samples", no_parse)
        asyncio.run(window())
    assert len(scraper.raw) >= 2 and not scraper.snaps
    scraper.snaps.append(bench.snapshot([], 99.0))  # e.g. the final scrape, taken later
    scraper.parse_raw()
    assert not scraper.raw and len(scraper.snaps) >= 3
    times = [s.t_s for s in scraper.snaps]
    assert times == sorted(times) and times[-1] == 99.0
    assert scraper.facts.max_loras == 2  # the fake server's facts, read after the window
