"""The asynchronous streaming benchmark client (httpx).

It sends requests the way vLLM's ``benchmark_serving`` does
(``vllm/benchmarks/lib/endpoint_request_func.py``, ``async_request_openai_completions``):
one streamed ``POST /v1/completions`` per arrival with ``model`` = the adapter's name,
``max_tokens`` = the request's output length, ``ignore_eos`` so that exactly that many tokens
are generated, and ``stream_options.include_usage``. TTFT is the time from sending to the
first streamed chunk that carries a choice (its text may be empty), every later chunk adds
one inter-token gap (ITL), the end-to-end latency ends at the last such chunk.

Unlike ``benchmark_serving``, which sends prompt *text*, the prompt is a list of token ids
(:func:`prompt_token_ids`), so the server sees exactly the workload's prompt length with no
tokenizer on the client (the OpenAI completions API accepts ``prompt`` as a list of ints).

The run (:func:`run_requests`) follows the benchmark window: requests are sent at their
arrival times in ``[0, duration_s)``; at the window's end every request still open is
cancelled (its connection is closed, which makes vLLM abort it) and not counted, as the
measured runs' client did. At most ``max_concurrency`` requests are in flight; an arrival
that finds them all busy waits and is sent when one finishes (``benchmark_serving
--max-concurrency``). The client talks to the one base URL it is given and never follows
redirects.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np

from loratwin.errors import ConfigError
from loratwin.live.errors import ServerError

#: Token ids of the synthetic prompts are drawn uniformly from this range: below every
#: tokenizer's vocabulary size, above the few special ids some tokenizers put first.
PROMPT_TOKEN_RANGE = (16, 496)

#: Request statuses of a record.
OK, CANCELLED, ERROR, NOT_SENT = "ok", "cancelled", "error", "not_sent"


def base_url(url: str) -> str:
    """The normalised ``http(s)://host:port`` of a user-given server URL.

    Raises
    ------
    ConfigError
        Not an http(s) URL with a host, or it has a query, fragment or credentials.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a valid URL ({exc}): {url!r}", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"must be http://HOST:PORT (got {url!r})", field="url")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"must be a plain http://HOST:PORT (got {url!r})", field="url")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def prompt_token_ids(seed: int, index: int, n_tokens: int) -> list[int]:
    """The prompt of request ``index`` of a run with ``seed``: ``n_tokens`` token ids.

    Drawn from ``numpy.random.default_rng([seed, index])``, so a request's prompt does not
    depend on the other requests and the same seed gives the same prompts.
    """
    rng = np.random.default_rng([seed, index])
    lo, hi = PROMPT_TOKEN_RANGE
    return rng.integers(lo, hi, size=n_tokens).tolist()


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a benchmark, before it is sent.

    Attributes
    ----------
    index:
        Position in the run (arrival order), also the prompt's seed.
    arrival_s:
        When to send it, s after the benchmark start.
    model:
        The ``model`` field: an adapter name (or the base model's name).
    input_tokens, output_tokens:
        Prompt length and ``max_tokens``, tokens.
    """

    index: int
    arrival_s: float
    model: str
    input_tokens: int
    output_tokens: int


@dataclass
class RequestRecord:
    """What happened to one request (filled in while it streams; see :func:`run_requests`).

    Times are s since the benchmark start (``send_s``, ``first_token_s``, ``finish_s``) or
    durations in s (``itl_s``: the gaps between streamed chunks). ``status`` is ``ok``
    (finished inside the window), ``cancelled`` (open at the window's end), ``error`` or
    ``not_sent`` (its arrival fell after a stop).
    """

    index: int
    arrival_s: float
    model: str
    input_tokens: int
    output_tokens: int
    send_s: float = math.nan
    first_token_s: float = math.nan
    finish_s: float = math.nan
    chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    itl_s: list[float] = field(default_factory=list)
    status: str = NOT_SENT
    http_status: int | None = None
    error: str | None = None

    @property
    def ttft_s(self) -> float:
        """Time to first token, s (NaN before it)."""
        return self.first_token_s - self.send_s

    @property
    def latency_s(self) -> float:
        """End-to-end latency, s (NaN unless finished)."""
        return self.finish_s - self.send_s


@dataclass
class RunLog:
    """Collector of a run: the records and the failures, readable after an interruption."""

    records: list[RequestRecord] = field(default_factory=list)
    first_error: RequestRecord | None = None
    stopped_early: bool = False


def _payload(req: PlannedRequest, seed: int) -> dict:
    return {
        "model": req.model,
        "prompt": prompt_token_ids(seed, req.index, req.input_tokens),
        "max_tokens": req.output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _error_text(body: bytes) -> str:
    try:
        msg = json.loads(body)
        if isinstance(msg, dict):
            err = msg.get("error", msg)
            if isinstance(err, dict):
                return str(err.get("message", err))
            return str(err)
    except ValueError:
        pass
    return body.decode(errors="replace").strip()[:200] or "empty response"


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines of a server-sent-event stream, split at ``\n`` only.

    Not ``httpx``'s ``aiter_lines``: that splits at every Unicode line boundary, and a JSON
    string may hold U+0085, U+2028 or U+2029 unescaped (vLLM's generated text of a random
    model does), which cut a ``data:`` line in two.
    """
    buf = b""
    async for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if buf:
        yield buf.rstrip(b"\r").decode("utf-8", errors="replace")


async def stream_one(
    client: httpx.AsyncClient, url: str, req: PlannedRequest, rec: RequestRecord, seed: int,
    t0: float,
) -> None:
    """Send one request to the completions endpoint ``url`` and fill ``rec`` while its
    chunks arrive (times relative to the ``perf_counter`` value ``t0``)."""
    rec.send_s = time.perf_counter() - t0
    async with client.stream("POST", url, json=_payload(req, seed)) as resp:
        rec.http_status = resp.status_code
        if resp.status_code != 200:
            rec.status = ERROR
            rec.error = f"HTTP {resp.status_code}: {_error_text(await resp.aread())}"
            return
        last = math.nan
        async for line in sse_lines(resp.aiter_bytes()):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            msg = json.loads(data)
            if msg.get("error"):
                rec.status = ERROR
                rec.error = str(msg["error"].get("message", msg["error"]))
                return
            if choices := msg.get("choices"):
                ts = time.perf_counter() - t0
                if rec.chunks == 0:
                    rec.first_token_s = ts
                else:
                    rec.itl_s.append(ts - last)
                last = ts
                rec.chunks += 1
                rec.finish_reason = choices[0].get("finish_reason") or rec.finish_reason
            elif usage := msg.get("usage"):
                rec.prompt_tokens = usage.get("prompt_tokens")
                rec.completion_tokens = usage.get("completion_tokens")
        if rec.chunks == 0:
            rec.status = ERROR
            rec.error = "the stream ended without a token"
            return
        rec.finish_s = last
        rec.status = OK


async def _guarded(
    client: httpx.AsyncClient, url: str, req: PlannedRequest, rec: RequestRecord, seed: int,
    t0: float, sem: asyncio.Semaphore, log: RunLog, stop: asyncio.Event,
    on_done: Callable[[RequestRecord], None] | None,
) -> None:
    async with sem:
        if stop.is_set():
            return
        try:
            await stream_one(client, url, req, rec, seed, t0)
        except asyncio.CancelledError:
            rec.status = CANCELLED
            raise
        except (httpx.HTTPError, json.JSONDecodeError, OSError) as exc:
            rec.status = ERROR
            rec.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if rec.status == ERROR and log.first_error is None:
        log.first_error = rec
        stop.set()
    if on_done is not None:
        on_done(rec)


async def run_requests(
    url: str,
    requests: Sequence[PlannedRequest],
    duration_s: float,
    *,
    seed: int,
    max_concurrency: int,
    log: RunLog,
    on_done: Callable[[RequestRecord], None] | None = None,
    connect_timeout_s: float = 10.0,
    t0: float | None = None,
) -> float:
    """Replay ``requests`` against ``url`` over a window of ``duration_s`` seconds.

    Parameters
    ----------
    url:
        Base URL of the server (see :func:`base_url`).
    requests:
        In arrival order; requests arriving at or after ``duration_s`` are not sent.
    duration_s:
        The benchmark window, s.
    seed:
        Seed of the prompts (:func:`prompt_token_ids`).
    max_concurrency:
        Most requests in flight at once (>= 1).
    log:
        Receives one :class:`RequestRecord` per request as soon as it is scheduled, so that
        an interrupted run keeps what it measured. The first failed request stops the run
        (``log.first_error``, ``log.stopped_early``).
    on_done:
        Called with each record when its request ends (progress).
    t0:
        ``time.perf_counter()`` value of t = 0 (default: now).

    Returns
    -------
    float
        ``time.perf_counter()`` of the benchmark start (t = 0 of every record).
    """
    if max_concurrency < 1:
        raise ConfigError(f"must be >= 1 (got {max_concurrency})", field="max_concurrency")
    endpoint = f"{url}/v1/completions"
    sem = asyncio.Semaphore(max_concurrency)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=max_concurrency,
                          max_keepalive_connections=max_concurrency)
    timeout = httpx.Timeout(None, connect=connect_timeout_s)
    tasks: list[asyncio.Task] = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout,
                                 follow_redirects=False) as client:
        t0 = time.perf_counter() if t0 is None else t0
        try:
            for req in requests:
                if req.arrival_s >= duration_s or stop.is_set():
                    break
                delay = t0 + req.arrival_s - time.perf_counter()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                        break  # stopped while waiting
                    except TimeoutError:
                        pass
                rec = RequestRecord(req.index, req.arrival_s, req.model, req.input_tokens,
                                    req.output_tokens)
                log.records.append(rec)
                tasks.append(asyncio.create_task(
                    _guarded(client, endpoint, req, rec, seed, t0, sem, log, stop, on_done)
                ))
            await _wait_window(tasks, stop, t0 + duration_s)
        finally:
            await _cancel(tasks)
    log.stopped_early = stop.is_set()
    return t0


async def _wait_window(tasks: list[asyncio.Task], stop: asyncio.Event, deadline: float) -> None:
    """Until every task is done, ``stop`` is set or ``deadline`` (perf_counter time) passes."""
    pending = {t for t in tasks if not t.done()}
    waiter = asyncio.create_task(stop.wait())
    try:
        while pending and not stop.is_set():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            done, _ = await asyncio.wait(pending | {waiter}, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            pending -= done
    finally:
        waiter.cancel()


async def _cancel(tasks: list[asyncio.Task]) -> None:
    open_tasks = [t for t in tasks if not t.done()]
    for t in open_tasks:
        t.cancel()
    if open_tasks:
        await asyncio.gather(*open_tasks, return_exceptions=True)


async def check_server(url: str, models: Sequence[str], timeout_s: float = 10.0) -> dict:
    """``/health`` answers 200 and ``/v1/models`` lists every name in ``models``.

    Returns
    -------
    dict
        ``{"version": str | None, "models": [ids...], "max_model_len": int | None,
        "base_model": str | None}`` (``/version`` and the base model's entry of
        ``/v1/models``).

    Raises
    ------
    ServerError
        The server cannot be reached, answers with an error, or does not serve a name.
    """
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        try:
            health = await client.get(f"{url}/health")
            listed = await client.get(f"{url}/v1/models")
            version = await client.get(f"{url}/version")
        except httpx.HTTPError as exc:
            raise ServerError(url, f"cannot reach the server ({type(exc).__name__}: "
                                   f"{exc or 'no answer'})") from None
    if health.status_code != 200:
        raise ServerError(url, f"/health answered HTTP {health.status_code}")
    if listed.status_code != 200:
        raise ServerError(url, f"/v1/models answered HTTP {listed.status_code}")
    try:
        entries = listed.json().get("data", [])
    except ValueError:
        raise ServerError(url, "/v1/models did not answer JSON") from None
    ids = [str(e.get("id")) for e in entries]
    missing = [m for m in models if m not in ids]
    if missing:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise ServerError(url, f"does not serve model {missing[0]!r} "
                               f"({len(missing)} of {len(models)} missing; served: {shown})")
    base = next((e for e in entries if not e.get("parent")), None)
    try:
        ver = version.json().get("version") if version.status_code == 200 else None
    except ValueError:
        ver = None
    return {
        "version": ver,
        "models": ids,
        "base_model": None if base is None else str(base.get("id")),
        "max_model_len": None if base is None else base.get("max_model_len"),
    }
