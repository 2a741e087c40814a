"""The streaming benchmark client against a fake vLLM server on a loopback port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from loratwin.errors import ConfigError
from loratwin.live.client import (
    CANCELLED,
    ERROR,
    OK,
    PROMPT_TOKEN_RANGE,
    PlannedRequest,
    RunLog,
    base_url,
    check_server,
    prompt_token_ids,
    run_requests,
)
from loratwin.live.errors import ServerError
from tests.live.fakevllm import FakeVllm


def _run(url: str, reqs: list[PlannedRequest], duration: float, **kw: object) -> RunLog:
    log = RunLog()
    asyncio.run(run_requests(url, reqs, duration, seed=kw.pop("seed", 0), log=log,
                             max_concurrency=kw.pop("max_concurrency", 64), **kw))
    return log


def test_base_url() -> None:
    assert base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert base_url(" https://host.example:443 ") == "https://host.example:443"
    for bad in ("ftp://h:1", "127.0.0.1:8000", "http://h:1/?x=1", "http://u:p@h:1",
                "http://h:99999"):
        with pytest.raises(ConfigError, match="url"):
            base_url(bad)


def test_prompt_ids_are_deterministic_per_request() -> None:
    a = prompt_token_ids(7, 3, 50)
    assert a == prompt_token_ids(7, 3, 50) and len(a) == 50
    assert a != prompt_token_ids(7, 4, 50) and a != prompt_token_ids(8, 3, 50)
    lo, hi = PROMPT_TOKEN_RANGE
    assert all(lo <= t < hi for t in a)


def test_requests_stream_with_vllm_benchmark_fields(fake_vllm: FakeVllm) -> None:
    reqs = [PlannedRequest(i, 0.01 * i, ("a0", "a1")[i % 2], 10 + i, 5) for i in range(6)]
    log = _run(fake_vllm.url, reqs, 30.0, seed=3)
    assert [r.status for r in log.records] == [OK] * 6
    for r, sent in zip(log.records, fake_vllm.seen, strict=True):
        assert sent["model"] == r.model and sent["max_tokens"] == 5
        assert sent["ignore_eos"] is True and sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["prompt"] == prompt_token_ids(3, r.index, r.input_tokens)
        assert r.chunks == 5 and len(r.itl_s) == 4
        assert (r.prompt_tokens, r.completion_tokens) == (r.input_tokens, 5)
        assert r.ttft_s >= fake_vllm.ttft_s * 0.9
        assert r.send_s >= r.arrival_s  # sent at (not before) its arrival time
        assert r.finish_reason == "length"


def test_window_cancels_open_requests(fake_vllm: FakeVllm) -> None:
    fake_vllm.token_s = 0.05
    reqs = [PlannedRequest(0, 0.0, "a0", 4, 2),      # done in ~0.07 s
            PlannedRequest(1, 0.0, "a1", 4, 400),    # would take 20 s
            PlannedRequest(2, 5.0, "a0", 4, 2)]      # arrives after the window
    log = _run(fake_vllm.url, reqs, 0.6)
    assert [r.status for r in log.records] == [OK, CANCELLED]  # request 2 never scheduled
    assert len(fake_vllm.seen) == 2
    for _ in range(50):  # the server notices the closed connection
        if fake_vllm.closed_early:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert fake_vllm.closed_early == 1


def test_concurrency_is_bounded(fake_vllm: FakeVllm) -> None:
    reqs = [PlannedRequest(i, 0.0, "a0", 4, 4) for i in range(8)]
    log = _run(fake_vllm.url, reqs, 30.0, max_concurrency=2)
    assert all(r.status == OK for r in log.records)
    assert fake_vllm.peak_running == 2


def test_refused_model_stops_the_run(fake_vllm: FakeVllm) -> None:
    reqs = [PlannedRequest(0, 0.0, "nope", 4, 2), PlannedRequest(1, 1.0, "a0", 4, 2)]
    log = _run(fake_vllm.url, reqs, 30.0)
    assert log.stopped_early and log.first_error is not None
    assert log.first_error.status == ERROR and log.first_error.http_status == 404
    assert "does not exist" in (log.first_error.error or "")
    assert len(log.records) == 1  # the later arrival was not sent


def test_check_server(fake_vllm: FakeVllm) -> None:
    info = asyncio.run(check_server(fake_vllm.url, ["a0", "a1"]))
    assert info["base_model"] == "tiny" and info["max_model_len"] == 2048
    with pytest.raises(ServerError, match=r"http://127\.0\.0\.1:\d+: does not serve model 'zz'"):
        asyncio.run(check_server(fake_vllm.url, ["a0", "zz"]))


def test_down_server_is_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match=f"http://127.0.0.1:{port}: cannot reach the server"):
        asyncio.run(check_server(f"http://127.0.0.1:{port}", ["a0"], timeout_s=2.0))


def test_zero_concurrency_rejected(fake_vllm: FakeVllm) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        _run(fake_vllm.url, [], 1.0, max_concurrency=0)



def test_sse_lines_split_at_newlines_only() -> None:
    from loratwin.live.client import sse_lines

    nel, lsep = "\u0085".encode(), "\u2028".encode()

    async def chunks():
        # U+0085 and U+2028 inside a JSON string, a message split across chunks
        for c in (b'data: {"t": "a' + nel + b"b", lsep + b'"}\r\n\ndata: [DO', b"NE]\n\n"):
            yield c

    async def collect() -> list[str]:
        return [line async for line in sse_lines(chunks())]

    lines = [ln for ln in asyncio.run(collect()) if ln]
    assert lines == ['data: {"t": "a\u0085b\u2028"}', "data: [DONE]"]
