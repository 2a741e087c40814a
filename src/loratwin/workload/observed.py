"""Adapter rates from observed traffic: a request log, or the vLLM servers' Prometheus metrics.

Request log
    A CSV with ``arrival_time_s,adapter_id,input_tokens,output_tokens`` (one row per request;
    times in s, any origin). Each adapter's rate is its request count over the log's span
    (last minus first arrival, s) and its mean lengths are the means of its requests: exact
    up to sampling noise.

Prometheus metrics (vLLM's ``/metrics``)
    vLLM exports no per-adapter request counts. What it exports per server (vLLM V1,
    ``vllm/v1/metrics/loggers.py``, ``PrometheusStatLogger``; same names in 0.8.5 and later):

    * ``vllm:request_success_total`` (counter, by ``finished_reason``): finished requests;
    * ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges);
    * ``vllm:lora_requests_info`` (gauge): at every stats record (each engine step) the
      series labelled ``running_lora_adapters`` / ``waiting_lora_adapters`` (comma-joined
      names of the adapters with a running / waiting request) is set to the current time.
      Old label combinations are never removed, so a scrape lists every combination seen
      since start with the time it was last seen.

    From ``n >= 2`` scrapes of one server taken ``dt`` apart we derive:

    * the server's arrival rate ``X`` (req/s): finished requests plus the growth of
      running + waiting, over the time covered;
    * the mean time in system ``W = L / X`` (s) by Little's law, ``L`` the mean of
      running + waiting over the scrapes;
    * for each adapter ``a`` the fraction ``f_a`` of the ``n - 1`` intervals in which it had
      a request in the system: the interval's *active set* is the union of the adapter lists
      of the ``lora_requests_info`` series that are new or whose value changed since the
      previous scrape (no clock synchronisation needed);
    * a rate by inverting the presence probability of Poisson arrivals: an adapter is seen in
      an interval of length ``dt`` iff one of its requests arrived in it or was still in the
      system at its start, ``f = 1 - exp(-lambda (dt + W))``, so
      ``lambda_a = -ln(1 - f_a) / (dt + W)``;
    * adapters seen in every interval (``f_a = 1``) are only bounded below (by the rate at
      ``f = 1 - 1 / (2 (n - 1))``): they share what the others leave of ``X``, equally, and
      at least their bound; if the resolved rates already exceed ``X``, all rates are scaled
      so that they sum to ``X`` (the measured total is kept).

    This is an approximation: it assumes Poisson arrivals and one mean time in system for
    every adapter of a server (adapters with longer requests are seen more often and come
    out hotter), resolves rates from about ``1 / (n (dt + W))`` to ``ln(n) / (dt + W)``
    req/s (more scrapes resolve colder adapters, shorter intervals hotter ones), and cannot
    split the traffic among always-present adapters. Per-adapter lengths are not exported;
    the server's mean prompt / output tokens (``vllm:prompt_tokens_total``,
    ``vllm:generation_tokens_total``) are reported in the notes only.

Scrape files: a Prometheus text exposition, or several separated by lines
``# scrape_time_s <unix seconds>`` (the time of the scrape that follows); a URL is scraped
``scrapes`` times, ``interval_s`` apart. Without time stamps, scrapes are taken as
``interval_s`` apart.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.errors import ConfigError, DataError
from loratwin.workload.types import Adapter

LOG_COLUMNS: tuple[str, ...] = ("arrival_time_s", "adapter_id", "input_tokens",
                                "output_tokens")
_SCRAPE_MARK = re.compile(r"^# scrape_time_s\s+(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ObservedRates:
    """Per-adapter rates (req/s) read from observed traffic, and how.

    ``mean_input_tokens`` / ``mean_output_tokens`` are filled from request logs only.
    """

    rates_req_s: dict[str, float]
    mean_input_tokens: dict[str, float] = field(default_factory=dict)
    mean_output_tokens: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def merged(self, other: ObservedRates) -> ObservedRates:
        """Rates of two sources added per adapter (e.g. two servers of a split adapter);
        lengths: the rate-weighted means."""
        rates = dict(self.rates_req_s)
        mi, mo = dict(self.mean_input_tokens), dict(self.mean_output_tokens)
        for a, r in other.rates_req_s.items():
            r0 = rates.get(a, 0.0)
            for mine, theirs in ((mi, other.mean_input_tokens), (mo, other.mean_output_tokens)):
                if a in theirs:
                    mine[a] = (theirs[a] if a not in mine or r0 + r == 0
                               else (mine[a] * r0 + theirs[a] * r) / (r0 + r))
            rates[a] = r0 + r
        return ObservedRates(rates, mi, mo, (*self.notes, *other.notes))


# ----------------------------------------------------------------------------- request logs


def rates_from_request_log(path: str | Path) -> ObservedRates:
    """Rates and mean lengths per adapter from a request log CSV (module docstring).

    Raises
    ------
    DataError
        Missing file or columns, non-numeric or negative times, token counts that are not
        integers >= 1, fewer than two distinct arrival times.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"request log not found: {p}")
    try:
        df = pd.read_csv(p, dtype={"adapter_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not a CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in LOG_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{p}: missing column {missing[0]!r} (needs {', '.join(LOG_COLUMNS)})")
    for c in ("arrival_time_s", "input_tokens", "output_tokens"):
        v = pd.to_numeric(df[c], errors="coerce")
        x = v.to_numpy(float)
        # arrival times as a trace's; token counts as a trace's too (integers >= 1)
        bad = (~np.isfinite(x) | (x < 0) if c == "arrival_time_s"
               else ~np.isfinite(x) | (x < 1) | (x != np.floor(x)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 2
            rule = "a finite number >= 0" if c == "arrival_time_s" else "an integer >= 1"
            got = df[c].iloc[row - 2]
            raise DataError(f"{p} row {row}: {c}: must be {rule} "
                            f"(got {got!r})" if isinstance(got, str) else
                            f"{p} row {row}: {c}: must be {rule} (got {got})")
        df[c] = v
    if df["adapter_id"].isna().any() or (df["adapter_id"].str.strip() == "").any():
        row = int(np.flatnonzero((df["adapter_id"].isna() | (df["adapter_id"].str.strip()
                                                             == "")).to_numpy())[0]) + 2
        raise DataError(f"{p} row {row}: adapter_id: must not be empty")
    t = df["arrival_time_s"].to_numpy(float)
    span = float(t.max() - t.min()) if t.size else 0.0
    if not span > 0:
        raise DataError(f"{p}: needs requests at two different times at least")
    g = df.groupby(df["adapter_id"].str.strip())
    counts = g.size()
    return ObservedRates(
        rates_req_s={str(a): float(n) / span for a, n in counts.items()},
        mean_input_tokens={str(a): float(v) for a, v in g["input_tokens"].mean().items()},
        mean_output_tokens={str(a): float(v) for a, v in g["output_tokens"].mean().items()},
        notes=(f"{p.name}: {len(df):,} requests of {len(counts):,} adapters over "
               f"{span:,.0f} s",),
    )


# ----------------------------------------------------------------------------- Prometheus


@dataclass(frozen=True)
class Scrape:
    """What one scrape of a vLLM server's ``/metrics`` tells about LoRA traffic.

    Attributes
    ----------
    time_s:
        When it was taken (s), or ``None`` if unknown.
    finished:
        ``vllm:request_success_total`` summed over its labels (requests).
    in_system:
        ``vllm:num_requests_running + vllm:num_requests_waiting`` (requests).
    prompt_tokens, generation_tokens:
        ``vllm:prompt_tokens_total`` and ``vllm:generation_tokens_total`` (tokens; NaN when
        absent).
    lora_series:
        (running adapters, waiting adapters) label pair -> gauge value of every
        ``vllm:lora_requests_info`` series.
    """

    time_s: float | None
    finished: float
    in_system: float
    prompt_tokens: float
    generation_tokens: float
    lora_series: dict[tuple[str, str], float]


def parse_scrape(text: str, time_s: float | None = None, source: str = "metrics") -> Scrape:
    """Parse one Prometheus text exposition of a vLLM server (prometheus-client's parser).

    Raises
    ------
    DataError
        Not a Prometheus exposition, or no ``vllm:request_success_total`` in it.
    """
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    series: dict[tuple[str, str], float] = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "vllm:lora_requests_info":
                    key = (s.labels.get("running_lora_adapters", ""),
                           s.labels.get("waiting_lora_adapters", ""))
                    series[key] = max(series.get(key, -math.inf), float(s.value))
                else:
                    totals[s.name] = totals.get(s.name, 0.0) + float(s.value)
    except (ValueError, TypeError, IndexError) as exc:
        raise DataError(f"{source}: not a Prometheus text exposition ({exc})") from None
    if "vllm:request_success_total" not in totals:
        raise DataError(f"{source}: no vllm:request_success_total: not the /metrics of a "
                        "vLLM server")
    return Scrape(
        time_s=time_s, finished=totals["vllm:request_success_total"],
        in_system=totals.get("vllm:num_requests_running", 0.0)
        + totals.get("vllm:num_requests_waiting", 0.0),
        prompt_tokens=totals.get("vllm:prompt_tokens_total", math.nan),
        generation_tokens=totals.get("vllm:generation_tokens_total", math.nan),
        lora_series=series,
    )


def split_scrapes(text: str) -> list[tuple[float | None, str]]:
    """A scrape file -> (time stamp or ``None``, exposition) per scrape (module docstring).

    Raises
    ------
    DataError
        A ``# scrape_time_s`` line whose value is not a number.
    """
    marks = list(_SCRAPE_MARK.finditer(text))
    if not marks:
        return [(None, text)]
    out = []
    for i, m in enumerate(marks):
        try:
            t = float(m.group(1))
        except ValueError:
            raise DataError(f"# scrape_time_s: not a number: {m.group(1)!r}") from None
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((t, text[m.end():end]))
    return out


def _adapters(label: str) -> set[str]:
    return {a for a in (x.strip() for x in label.split(",")) if a}


def active_sets(scrapes: Sequence[Scrape]) -> list[set[str]]:
    """Per interval between consecutive scrapes, the adapters with a request in the system at
    some step of it: the ``lora_requests_info`` series new or changed since the previous
    scrape."""
    out = []
    for prev, cur in itertools.pairwise(scrapes):
        seen: set[str] = set()
        for key, v in cur.lora_series.items():
            if prev.lora_series.get(key) != v:
                seen |= _adapters(key[0]) | _adapters(key[1])
        out.append(seen)
    return out


@dataclass(frozen=True)
class ServerTraffic:
    """Server-level quantities of a series of scrapes (see the module docstring)."""

    arrival_rate_req_s: float
    time_in_system_s: float
    mean_interval_s: float
    intervals: int


def server_traffic(scrapes: Sequence[Scrape], interval_s: float, source: str = "metrics"
                   ) -> ServerTraffic:
    """Arrival rate ``X``, Little's-law time in system ``W`` and the mean interval.

    Raises
    ------
    DataError
        Fewer than two scrapes, time stamps not increasing, or a counter that went down
        (a server restart between scrapes).
    """
    if len(scrapes) < 2:
        raise DataError(f"{source}: needs at least two scrapes of the server (got "
                        f"{len(scrapes)}): vLLM's counters give rates only as differences")
    times = [s.time_s for s in scrapes]
    if all(t is not None for t in times):
        dts = np.diff(np.array(times, float))
    else:
        dts = np.full(len(scrapes) - 1, float(interval_s))
    if not (dts > 0).all():
        raise DataError(f"{source}: scrape times must increase")
    finished = np.array([s.finished for s in scrapes])
    if (np.diff(finished) < 0).any():
        raise DataError(f"{source}: vllm:request_success_total went down between scrapes "
                        "(server restarted?)")
    span = float(dts.sum())
    arrivals = finished[-1] - finished[0] + scrapes[-1].in_system - scrapes[0].in_system
    x = max(float(arrivals), 0.0) / span
    mean_l = float(np.mean([s.in_system for s in scrapes]))
    return ServerTraffic(x, mean_l / x if x > 0 else 0.0, span / len(dts), len(dts))


def estimate_rates(active: Sequence[set[str]], traffic: ServerTraffic) -> dict[str, float]:
    """Per-adapter rates (req/s) from the active sets of one server (module docstring)."""
    n = len(active)
    if n == 0 or traffic.arrival_rate_req_s <= 0:
        return {a: 0.0 for s in active for a in s}
    window = traffic.mean_interval_s + traffic.time_in_system_s
    counts: dict[str, int] = {}
    for s in active:
        for a in s:
            counts[a] = counts.get(a, 0) + 1
    f_max = 1.0 - 1.0 / (2.0 * n)
    resolved = {a: -math.log1p(-c / n) / window for a, c in counts.items() if c < n}
    saturated = [a for a, c in counts.items() if c == n]
    floor = -math.log1p(-f_max) / window
    x = traffic.arrival_rate_req_s
    rest = x - sum(resolved.values())
    if saturated and rest >= floor * len(saturated):
        return {**resolved, **{a: rest / len(saturated) for a in saturated}}
    rates = {**resolved, **{a: floor for a in saturated}}
    total = sum(rates.values())
    return {a: r * x / total for a, r in rates.items()} if total > 0 else rates


def rates_from_scrapes(scrapes: Sequence[Scrape], interval_s: float, source: str
                       ) -> ObservedRates:
    """:class:`ObservedRates` of one server from its scrapes (module docstring)."""
    traffic = server_traffic(scrapes, interval_s, source)
    rates = estimate_rates(active_sets(scrapes), traffic)
    first, last = scrapes[0], scrapes[-1]
    done = last.finished - first.finished
    lengths = ""
    if done > 0 and math.isfinite(last.prompt_tokens - first.prompt_tokens):
        lengths = (f", mean prompt / output {(last.prompt_tokens - first.prompt_tokens) / done:.0f}"
                   f" / {(last.generation_tokens - first.generation_tokens) / done:.0f} tokens")
    note = (f"{source}: {traffic.intervals} interval(s) of {traffic.mean_interval_s:.3g} s, "
            f"{traffic.arrival_rate_req_s:.4g} req/s, time in system "
            f"{traffic.time_in_system_s:.3g} s{lengths}; per-adapter rates estimated from "
            "vllm:lora_requests_info presence")
    return ObservedRates(rates, notes=(note,))


def scrape_url(url: str, scrapes: int, interval_s: float,
               sleep: Callable[[float], None] = time.sleep) -> list[Scrape]:
    """Scrape a vLLM ``/metrics`` endpoint ``scrapes`` times, ``interval_s`` apart (httpx).

    Raises
    ------
    DataError
        The endpoint cannot be read.
    """
    import httpx

    out = []
    for i in range(scrapes):
        if i:
            sleep(interval_s)
        try:
            resp = httpx.get(url, timeout=10.0)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise DataError(f"{url}: cannot scrape ({exc})") from None
        out.append(parse_scrape(resp.text, time.time(), url))
    return out


def _is_request_log(path: Path) -> bool:
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        head = fh.readline()
    return "arrival_time_s" in head and "adapter_id" in head


def observe_rates(sources: Sequence[str], *, scrapes: int = 7, interval_s: float = 10.0
                  ) -> ObservedRates:
    """Observed rates from request logs, scrape files and ``/metrics`` URLs, added per
    adapter over the sources (one source per server, or one log of the whole fleet).

    Raises
    ------
    ConfigError
        No source, fewer than two scrapes, a non-positive interval.
    DataError
        An unreadable source (see the readers).
    """
    if not sources:
        raise ConfigError("give at least one source", field="rates_from_metrics")
    if scrapes < 2:
        raise ConfigError(f"must be >= 2 (got {scrapes})", field="scrapes")
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise ConfigError(f"must be > 0 (got {interval_s})", field="scrape_interval")
    total = ObservedRates({})
    for src in sources:
        if src.startswith(("http://", "https://")):
            obs = rates_from_scrapes(scrape_url(src, scrapes, interval_s), interval_s, src)
        else:
            path = Path(src)
            if not path.is_file():
                raise DataError(f"observed traffic file not found: {path}")
            if _is_request_log(path):
                obs = rates_from_request_log(path)
            else:
                try:
                    text_all = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}: neither a request log CSV nor Prometheus text "
                                    "(not UTF-8)", field="--rates-from-metrics") from None
                parsed = [parse_scrape(text, t, f"{path.name} scrape {i + 1}")
                          for i, (t, text) in enumerate(split_scrapes(text_all))]
                obs = rates_from_scrapes(parsed, interval_s, path.name)
        total = total.merged(obs)
    return total


def apply_observed(adapters: Sequence[Adapter], obs: ObservedRates
                   ) -> tuple[list[Adapter], list[str]]:
    """The adapters with their observed rates (and lengths, when observed).

    Adapters the traffic does not mention keep their rates (a new adapter has no traffic
    yet); the notes say how many.

    Raises
    ------
    ConfigError
        The traffic names adapters that are not in the workload.
    """
    ids = {a.id for a in adapters}
    unknown = sorted(set(obs.rates_req_s) - ids)
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise ConfigError(f"observed traffic names adapters not in the workload: "
                          f"{', '.join(unknown[:3])}{more}", field="rates_from_metrics")
    out = [replace(a, rate=obs.rates_req_s[a.id],
                   mean_input_tokens=obs.mean_input_tokens.get(a.id, a.mean_input_tokens),
                   mean_output_tokens=obs.mean_output_tokens.get(a.id, a.mean_output_tokens))
           if a.id in obs.rates_req_s else a for a in adapters]
    notes = list(obs.notes)
    unseen = len(ids) - len(obs.rates_req_s)
    if unseen:
        notes.append(f"{unseen} adapter(s) not in the observed traffic keep the workload's "
                     "rates")
    return out, notes
