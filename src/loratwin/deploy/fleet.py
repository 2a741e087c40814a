"""The fleet a placement plan describes: one vLLM server per GPU, its adapters and flags.

Every emitter (:mod:`loratwin.deploy`) reads this one view, built from the plan document of
``loratwin place --json`` (:func:`fleet_from_plan`), so that the Kubernetes objects, the
KServe objects, the LiteLLM config, the router table and the ``vllm serve`` scripts all carry
the same adapters and flags.

Flags of each server (vLLM 0.8.5 ``vllm/engine/arg_utils.py``): ``--enable-lora``,
``--max-loras``, ``--max-cpu-loras``, ``--max-lora-rank`` (rounded up to a rank the plan's
vLLM release accepts, :func:`vllm_rank`), ``--max-num-seqs``, ``--max-num-batched-tokens``
(the plan's value, else the token budget the twin assumed, ``max(2048, max_num_seqs)``),
``--gpu-memory-utilization`` when the plan sets it, and ``--lora-modules name=path``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loratwin.errors import ConfigError, DataError
from loratwin.twin.release import DEFAULT_VERSION, normalise_version, slot_rank

#: Port every server listens on (``vllm serve`` default).
VLLM_PORT = 8000
#: Default adapter location: KServe's ``pvc://<claim>/<path>`` form, one folder per adapter.
DEFAULT_ADAPTER_URI_TEMPLATE = "pvc://loratwin-adapters/{adapter_id}"
#: Default router address of a server: the Kubernetes Service of that name, OpenAI API root.
DEFAULT_API_BASE_TEMPLATE = "http://{server}:8000/v1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def vllm_rank(rank: int, vllm_version: str | None = None) -> int:
    """Smallest ``--max-lora-rank`` vLLM ``vllm_version`` (default: the twin's default
    release) accepts that holds ``rank``: the release rule of
    :func:`loratwin.twin.release.slot_rank` (``vllm/config.py`` ``LoRAConfig`` of that release).

    Raises
    ------
    DataError
        Unknown release, or a rank above the largest the release accepts.
    """
    try:
        return slot_rank(rank, vllm_version)
    except ConfigError as exc:
        raise DataError(exc.message) from None


def twin_token_budget(max_num_seqs: int) -> int:
    """``--max-num-batched-tokens`` the twin's verification assumes: ``max(2048, max_num_seqs)``
    (tokens per step; vLLM requires it to be >= ``max_num_seqs``)."""
    return max(2048, int(max_num_seqs))


@dataclass(frozen=True)
class AdapterSlot:
    """One adapter served by one server.

    Attributes
    ----------
    id:
        Adapter name (the ``model`` clients send; the ``--lora-modules`` name).
    rank:
        LoRA rank r.
    rate_req_s:
        Request rate this server receives for the adapter, req/s.
    share:
        Fraction of the adapter's traffic this server should get (1 unless the adapter is
        replicated over several servers).
    uri:
        Where the adapter's files are (``--adapter-uri-template``).
    """

    id: str
    rank: int
    rate_req_s: float
    share: float
    uri: str


@dataclass(frozen=True)
class ServerSpec:
    """One GPU server: a ``vllm serve`` process and its adapters.

    ``gpu_memory_utilization`` is ``None`` when the plan leaves vLLM's default (0.9).
    """

    index: int
    name: str
    adapters: tuple[AdapterSlot, ...]
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    planned_max_lora_rank: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float | None
    api_base: str
    predicted: Mapping[str, Any]
    verified: Mapping[str, Any] | None

    def flags(self) -> list[str]:
        """vLLM flags of this server, without the model and ``--lora-modules``."""
        out = ["--enable-lora", "--max-loras", str(self.max_loras),
               "--max-cpu-loras", str(self.max_cpu_loras),
               "--max-lora-rank", str(self.max_lora_rank),
               "--max-num-seqs", str(self.max_num_seqs),
               "--max-num-batched-tokens", str(self.max_num_batched_tokens)]
        if self.gpu_memory_utilization is not None:
            out += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        return out


@dataclass(frozen=True)
class Fleet:
    """Every server of a plan, with what the emitters need around them.

    Attributes
    ----------
    hf_model:
        Hugging Face name of the base model (``vllm serve <hf_model>``).
    profile, profile_kind:
        Profile name and whether it is measured or a prior ("estimated").
    algorithm:
        Placement algorithm that made the plan.
    servers:
        One per GPU, in plan order.
    prefix:
        Name prefix of every object (``<prefix>-gpu-00``, ...).
    vllm_version:
        The vLLM release the plan is for (``profile.vllm_version`` of the plan, else the
        twin's default), whose rule rounds ``--max-lora-rank``.
    """

    hf_model: str
    profile: str
    profile_kind: str
    algorithm: str
    servers: tuple[ServerSpec, ...]
    prefix: str
    vllm_version: str = DEFAULT_VERSION

    def replicas(self) -> dict[str, list[tuple[ServerSpec, AdapterSlot]]]:
        """adapter id -> the (server, slot) pairs serving it, in server order."""
        out: dict[str, list[tuple[ServerSpec, AdapterSlot]]] = {}
        for s in self.servers:
            for a in s.adapters:
                out.setdefault(a.id, []).append((s, a))
        return out


@dataclass(frozen=True)
class FleetOptions:
    """User choices that are not in the plan.

    Attributes
    ----------
    prefix:
        Object name prefix, a DNS label (lower-case letters, digits, '-').
    adapter_uri_template:
        ``str.format`` template of each adapter's location; fields ``{adapter_id}`` and
        ``{rank}``.
    api_base_template:
        Template of a server's OpenAI API root for the routers; field ``{server}`` (the
        server's name) and ``{index}``.
    hf_model:
        Base model; default the plan's profile's ``hf_model_name``.
    """

    prefix: str = "loratwin"
    adapter_uri_template: str = DEFAULT_ADAPTER_URI_TEMPLATE
    api_base_template: str = DEFAULT_API_BASE_TEMPLATE
    hf_model: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for a bad prefix or template (before any long work)."""
        if not _DNS_LABEL.match(self.prefix) or len(self.prefix) > 40:
            raise ConfigError(f"{self.prefix!r} is not a DNS label of at most 40 characters "
                              "(lower-case letters, digits, '-')", field="name-prefix")
        _format(self.adapter_uri_template, "adapter-uri-template", adapter_id="a", rank=8)
        _format(self.api_base_template, "api-base-template", server="s", index=0)


def _format(template: str, field: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        names = ", ".join("{" + k + "}" for k in values)
        raise ConfigError(f"{template!r}: {exc!s} (fields: {names})", field=field) from None


def _num(server: Mapping[str, Any], key: str, where: str, *, integer: bool = True,
         optional: bool = False) -> Any:
    v = server.get(key)
    if v is None and optional:
        return None
    ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) if integer else (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
    if not ok:
        kind = "an integer >= 1" if integer else "a number > 0"
        raise DataError(f"{where}: {key} must be {kind} (got {v!r})")
    return v


def _list(server: Mapping[str, Any], key: str, n: int | None, where: str) -> list[Any]:
    v = server.get(key)
    if not isinstance(v, list) or (n is not None and len(v) != n):
        size = f" of {n} entries" if n is not None else ""
        raise DataError(f"{where}: {key} must be a list{size}")
    return v


def _server(doc_server: Any, k: int, opts: FleetOptions, vllm_version: str) -> ServerSpec:
    where = f"servers[{k}]"
    if not isinstance(doc_server, Mapping):
        raise DataError(f"{where}: must be a mapping")
    ids = _list(doc_server, "adapters", None, where)
    if not ids or not all(isinstance(i, str) and i for i in ids):
        raise DataError(f"{where}: adapters must be a non-empty list of names")
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: an adapter is listed twice")
    bad = next((i for i in ids if "=" in i), None)
    if bad is not None:  # vLLM splits each --lora-modules value at '=' into name and path
        raise DataError(f"{where}: adapter id {bad!r} contains '=' (not allowed in "
                        "--lora-modules)")
    n = len(ids)
    ranks = _list(doc_server, "ranks", n, where)
    rates = doc_server.get("rates_req_s") or [math.nan] * n
    shares = doc_server.get("traffic_share") or [1.0] * n
    if len(rates) != n or len(shares) != n:
        raise DataError(f"{where}: rates_req_s and traffic_share need one entry per adapter")
    slots = []
    for i, r, rate, share in zip(ids, ranks, rates, shares, strict=True):
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise DataError(f"{where}: rank of {i!r} must be an integer >= 1 (got {r!r})")
        if not isinstance(share, int | float) or not 0 < share <= 1 + 1e-9:
            raise DataError(f"{where}: traffic_share of {i!r} must be in (0, 1] (got {share!r})")
        slots.append(AdapterSlot(i, r, float(rate) if rate is not None else math.nan,
                                 float(share), _format(opts.adapter_uri_template,
                                                       "adapter-uri-template",
                                                       adapter_id=i, rank=r)))
    max_loras = _num(doc_server, "max_loras", where)
    max_cpu_loras = _num(doc_server, "max_cpu_loras", where)
    planned_rank = _num(doc_server, "max_lora_rank", where)
    max_num_seqs = _num(doc_server, "max_num_seqs", where)
    if max_cpu_loras < max_loras:
        raise DataError(f"{where}: max_cpu_loras ({max_cpu_loras}) < max_loras ({max_loras}); "
                        "vLLM refuses to start")
    if max(r for r in ranks) > planned_rank:
        raise DataError(f"{where}: an adapter's rank exceeds max_lora_rank {planned_rank}")
    try:
        accepted = vllm_rank(planned_rank, vllm_version)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    budget = _num(doc_server, "max_num_batched_tokens", where, optional=True)
    util = _num(doc_server, "gpu_memory_utilization", where, integer=False, optional=True)
    if util is not None and util > 1:
        raise DataError(f"{where}: gpu_memory_utilization must be <= 1 (got {util})")
    name = f"{opts.prefix}-gpu-{k:02d}"
    return ServerSpec(
        index=k, name=name, adapters=tuple(slots), max_loras=max_loras,
        max_cpu_loras=max_cpu_loras, max_lora_rank=accepted,
        planned_max_lora_rank=planned_rank, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget or twin_token_budget(max_num_seqs),
        gpu_memory_utilization=None if util is None else float(util),
        api_base=_format(opts.api_base_template, "api-base-template", server=name, index=k),
        predicted=dict(doc_server.get("predicted") or {}),
        verified=doc_server.get("verified") or None,
    )


def fleet_from_plan(doc: Mapping[str, Any], options: FleetOptions | None = None) -> Fleet:
    """The fleet of a ``loratwin place --json`` document.

    Raises
    ------
    DataError
        The document is not a placement plan (missing or malformed servers, flags, ranks,
        shares) or names no base model.
    ConfigError
        Bad options (see :meth:`FleetOptions.check`).
    """
    opts = options or FleetOptions()
    opts.check()
    if not isinstance(doc, Mapping):
        raise DataError("the plan must be a JSON object")
    servers = doc.get("servers")
    if not isinstance(servers, Sequence) or isinstance(servers, str) or not servers:
        raise DataError("the plan has no servers list")
    prof = doc.get("profile") if isinstance(doc.get("profile"), Mapping) else {}
    hf_model = opts.hf_model or prof.get("hf_model_name")
    if not isinstance(hf_model, str) or not hf_model:
        raise DataError("the plan names no base model (profile.hf_model_name)")
    version = prof.get("vllm_version") or DEFAULT_VERSION
    try:
        version = normalise_version(str(version))
    except ConfigError as exc:
        raise DataError(f"profile.vllm_version: {exc.message}") from None
    specs = tuple(_server(s, k, opts, version) for k, s in enumerate(servers))
    return Fleet(hf_model=hf_model, profile=str(prof.get("name", "")),
                 profile_kind=str(prof.get("profile_kind", "")),
                 algorithm=str(doc.get("algorithm", "")), servers=specs, prefix=opts.prefix,
                 vllm_version=version)


def local_modules(server: ServerSpec, lora_dir: str) -> list[str]:
    """``--lora-modules`` values ``id=<lora_dir>/<id>`` (paths on the serving host)."""
    base = lora_dir.rstrip("/") or "/"
    return [f"{a.id}={base}/{a.id}" for a in server.adapters]


def plan_context(profile_name: str, hf_model: str, profile_kind: str, vllm_version: str,
                 workload: str, slo: Mapping[str, float | None]) -> dict[str, Any]:
    """Keys ``loratwin place --json`` adds for the emitters and the report: the profile
    (name, ``hf_model_name``, ``profile_kind``, ``vllm_version``), the workload file name and
    the SLOs (ms, ``None`` when not set)."""
    return {"profile": {"name": profile_name, "hf_model_name": hf_model,
                        "profile_kind": profile_kind, "vllm_version": vllm_version},
            "workload": workload, "slo": dict(slo)}
