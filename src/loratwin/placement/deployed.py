"""The deployed placement: reading a ``loratwin place --json`` (or ``replan -o``) document.

A deployed placement is what :mod:`loratwin.placement.replan` starts from: per GPU, its
name, the adapter ids it serves with the share of each adapter's traffic routed there, and
the vLLM flags it was started with (``max_loras``, ``max_cpu_loras``, ``max_lora_rank``,
``max_num_seqs``). Rates in the document are those of the old workload; re-planning takes
the rates of the new one.

Document fields read (the ``--json`` schema of ``loratwin place``,
:func:`loratwin.placement.report.placement_dict` plus
:func:`loratwin.deploy.fleet.plan_context`): ``profile.name`` (or ``model``; older documents
lack both), ``servers[].adapters``, ``servers[].traffic_share`` (default 1 per adapter),
``servers[].rates_req_s``, ``servers[].ranks``, the flags, and the optional ``name`` and
``gpu_type`` that ``replan`` and ``place --gpu-types`` write. GPUs without a ``name`` are
called ``gpu-<index>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratwin.errors import ConfigError, DataError
from loratwin.profile.model import Profile, max_loras_that_fit


@dataclass(frozen=True)
class DeployedServer:
    """One running GPU of a deployed placement.

    Attributes
    ----------
    name:
        Stable GPU name (``gpu-<index>`` when the document gives none).
    adapters:
        Adapter ids served, in the document's order.
    shares:
        Fraction of each adapter's traffic routed to this GPU (1 unless the adapter is split
        over several GPUs), aligned with ``adapters``.
    ranks:
        LoRA rank of each adapter as deployed.
    rates_req_s:
        Rate served here in the old workload, req/s, aligned with ``adapters``.
    max_loras, max_cpu_loras, max_lora_rank, max_num_seqs:
        The server's vLLM flags.
    gpu_type:
        GPU type name of a mixed fleet (``place --gpu-types``), else ``None``.
    """

    name: str
    adapters: tuple[str, ...]
    shares: tuple[float, ...]
    ranks: tuple[int, ...]
    rates_req_s: tuple[float, ...]
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    max_num_seqs: int
    gpu_type: str | None = None


@dataclass(frozen=True)
class DeployedPlacement:
    """A deployed placement (see the module docstring).

    Attributes
    ----------
    model:
        Profile name the placement was made for (``None`` in documents that predate it).
    servers:
        The GPUs, in the document's order.
    source:
        Where it was read from (for messages).
    """

    model: str | None
    servers: tuple[DeployedServer, ...]
    source: str = "CURRENT.json"

    @property
    def adapter_ids(self) -> set[str]:
        """Every adapter id served somewhere."""
        return {a for s in self.servers for a in s.adapters}

    def gpus_of(self) -> dict[str, list[str]]:
        """Adapter id -> names of the GPUs serving it (several for a split adapter)."""
        out: dict[str, list[str]] = {}
        for s in self.servers:
            for a in s.adapters:
                out.setdefault(a, []).append(s.name)
        return out


def _int(value: Any, where: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
            or value < minimum:
        raise DataError(f"{where}: {name}: must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _floats(values: Any, n: int, where: str, name: str, default: float | None) -> tuple[float,
                                                                                          ...]:
    if values is None:
        if default is None:
            raise DataError(f"{where}: {name}: missing")
        return (default,) * n
    if not isinstance(values, list) or len(values) != n:
        raise DataError(f"{where}: {name}: must be a list of {n} numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v < 0:
            raise DataError(f"{where}: {name}: must hold finite numbers >= 0 (got {v!r})")
        out.append(float(v))
    return tuple(out)


def _server(doc: Any, index: int, source: str) -> DeployedServer:
    where = f"{source} server {index}"
    if not isinstance(doc, dict):
        raise DataError(f"{where}: must be a mapping")
    ids = doc.get("adapters")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise DataError(f"{where}: adapters: must be a non-empty list of adapter ids")
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: adapters: an adapter id appears twice on one GPU")
    n = len(ids)
    shares = _floats(doc.get("traffic_share"), n, where, "traffic_share", 1.0)
    if any(not 0 < s <= 1 + 1e-9 for s in shares):
        raise DataError(f"{where}: traffic_share: must be in (0, 1]")
    ranks_raw = doc.get("ranks")
    if not isinstance(ranks_raw, list) or len(ranks_raw) != n:
        raise DataError(f"{where}: ranks: must be a list of {n} ranks")
    ranks = tuple(_int(r, where, "ranks") for r in ranks_raw)
    name = doc.get("name", f"gpu-{index}")
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}: name: must be a non-empty string")
    gpu_type = doc.get("gpu_type")
    if gpu_type is not None and not isinstance(gpu_type, str):
        raise DataError(f"{where}: gpu_type: must be a string")
    return DeployedServer(
        name=name, adapters=tuple(ids), shares=shares, ranks=ranks,
        rates_req_s=_floats(doc.get("rates_req_s"), n, where, "rates_req_s", 0.0),
        max_loras=_int(doc.get("max_loras"), where, "max_loras"),
        max_cpu_loras=_int(doc.get("max_cpu_loras", doc.get("max_loras")), where,
                           "max_cpu_loras"),
        max_lora_rank=_int(doc.get("max_lora_rank", max(ranks)), where, "max_lora_rank"),
        max_num_seqs=_int(doc.get("max_num_seqs", 2048), where, "max_num_seqs"),
        gpu_type=gpu_type,
    )


def parse_deployed(doc: Any, source: str = "CURRENT.json") -> DeployedPlacement:
    """A :class:`DeployedPlacement` from a parsed JSON document.

    Raises
    ------
    DataError
        Not a placement document: no ``servers`` list, a server without adapters, lists of
        mismatched lengths, invalid flags, duplicate GPU names.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("servers"), list):
        raise DataError(f"{source}: not a placement (expected the JSON of `loratwin place "
                        "--json` with a 'servers' list)")
    if not doc["servers"]:
        raise DataError(f"{source}: the placement has no servers")
    prof = doc.get("profile")
    model = prof.get("name") if isinstance(prof, dict) else doc.get("model")
    if model is not None and not isinstance(model, str):
        raise DataError(f"{source}: profile name: must be a string")
    servers = tuple(_server(s, i, source) for i, s in enumerate(doc["servers"]))
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise DataError(f"{source}: two servers have the same name")
    return DeployedPlacement(model, servers, source)


def load_deployed(path: str | Path) -> DeployedPlacement:
    """Read a placement JSON written by ``loratwin place --json`` or ``loratwin replan -o``.

    Raises
    ------
    DataError
        Missing file, invalid JSON, or not a placement document.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"placement file not found: {p}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from None
    return parse_deployed(doc, str(p))


def check_model(deployed: DeployedPlacement, profile: Profile) -> None:
    """Check that a deployed placement was made for ``profile``.

    The document's ``model`` must equal the profile name; a document without one is checked
    against the profile's memory: every server's ``max_loras`` must fit its
    ``max_lora_rank`` in the profile's KV model (:func:`max_loras_that_fit`), which a
    placement for a smaller model on the same GPU can violate.

    Raises
    ------
    ConfigError
        The placement names another model, or a server's flags do not fit this profile.
    """
    if deployed.model is not None and deployed.model != profile.name:
        raise ConfigError(f"{deployed.source} was placed for model {deployed.model!r}, not "
                          f"{profile.name!r} (give --model {deployed.model})", field="model")
    limits: dict[tuple[int, int], int] = {}
    for s in deployed.servers:
        key = (s.max_lora_rank, s.max_num_seqs)
        if key not in limits:
            limits[key] = max_loras_that_fit(profile, s.max_lora_rank,
                                             max_num_seqs=s.max_num_seqs)
        if s.max_loras > limits[key]:
            raise ConfigError(
                f"{deployed.source}: {s.name} runs max_loras {s.max_loras} at max_lora_rank "
                f"{s.max_lora_rank}, more than {profile.name!r} fits ({limits[key]}): placed "
                "for another model?", field="model")
