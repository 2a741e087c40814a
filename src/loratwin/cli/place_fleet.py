"""``loratwin place --gpu-types``: the fleet of least cost over several GPU types.

Examples
--------
::

    loratwin place adapters.csv --gpu-types H100=4.0 --gpu-types H200=5.5:8 \\
        --gpu-profile H200=h200-prior.json --json fleet.json

Every type needs a profile: ``--gpu-profile TYPE=PROFILE`` (a name or a JSON path), or the
``--model`` profile when the type's name is a word of that profile's ``gpu`` field (``H100``
for the bundled profiles). Every type's profile must serve the same model (the same layer
shapes, ``Profile.arch``: a prior made from the base model's ``config.json`` serves its
fine-tunes too). A type's
surrogate is ``--gpu-surrogate TYPE=S`` (a ``.npz`` file, ``universal``, ``on-the-fly`` or
``auto``, as ``place --surrogate``), else ``--surrogate`` when it is one of those three words
(it applies to every type without a ``--gpu-surrogate``; a file belongs to one type), else
the profile's bundled one or the universal one; a profile with
neither borrows the surrogate of another type by the capacity ratio
(:class:`~loratwin.placement.transfer.CapacityTransferPredictor`, an estimate) and every GPU
of that type is then confirmed in its twin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from loratwin.cli.common import console, fmt, write_json
from loratwin.errors import ConfigError, DataError
from loratwin.placement import predictor
from loratwin.placement.fleet import FleetPlacement, GpuType, parse_gpu_type, place_fleet
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.report import placement_dict
from loratwin.placement.transfer import CapacityTransferPredictor
from loratwin.placement.types import GpuPredictor
from loratwin.placement.verify import verify_gpus
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.capacity import CapacityTable
from loratwin.workload.adapters import load_adapters


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"expected TYPE=VALUE (got {item!r})", field=flag)
        out[name.strip()] = value.strip()
    return out


def check_fleet_surrogate(surrogate: str | None) -> None:
    """``--surrogate`` with ``--gpu-types``: a word of
    :data:`~loratwin.surrogate.on_the_fly.CHOICES` or nothing.

    Raises
    ------
    ConfigError
        A file or bundled name (with several types it must name its type).
    """
    from loratwin.surrogate.on_the_fly import CHOICES

    if surrogate is not None and surrogate not in CHOICES:
        raise ConfigError(f"with --gpu-types, --surrogate takes {', '.join(CHOICES)}; give a "
                          "file for its type: --gpu-surrogate TYPE=S.npz", field="surrogate")


def type_surrogates(profiles: dict[str, Profile], given: dict[str, str], surrogate: str | None,
                    max_num_seqs: int) -> dict[str, str]:
    """Every type's ``--surrogate`` choice, with ``on-the-fly`` / ``auto`` resolved to a file
    (trained now, with a progress bar of its twin runs, when not cached).

    ``given`` are the ``--gpu-surrogate`` pairs (kept as given for types not in
    ``profiles``, so that :func:`type_predictors` reports them); ``surrogate`` applies to the
    other types and has passed :func:`check_fleet_surrogate`.
    """
    from loratwin.cli.progress import lazy_progress
    from loratwin.surrogate.on_the_fly import AUTO, ON_THE_FLY, resolve_choice

    out = dict(given)
    for t, prof in profiles.items():
        choice = given.get(t, surrogate)
        if choice in (ON_THE_FLY, AUTO):
            with lazy_progress(f"on-the-fly surrogate of {prof.name} ({t}): twin runs",
                               "runs") as bar:
                choice = resolve_choice(prof, choice, max_num_seqs=max_num_seqs, on_runs=bar)
        if choice is not None:
            out[t] = choice
    return out


def type_profiles(names: Sequence[str], given: dict[str, str], model: str) -> dict[str, Profile]:
    """The profile of every GPU type (module docstring).

    Raises
    ------
    ConfigError
        A type without a profile, a ``--gpu-profile`` for an unknown type, or profiles of
        different models (each other's or ``--model``'s).
    """
    unknown = [t for t in given if t not in names]
    if unknown:
        raise ConfigError(f"--gpu-profile for {unknown[0]!r}, which is not in --gpu-types",
                          field="gpu_profile")
    default = load_profile(model)
    out = {}
    for t in names:
        if t in given:
            out[t] = load_profile(given[t])
        elif re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", default.gpu, re.IGNORECASE):
            out[t] = default
        else:
            raise ConfigError(f"GPU type {t!r} has no profile (give --gpu-profile "
                              f"{t}=PROFILE.json, e.g. from `loratwin profile prior`)",
                              field="gpu_profile")
    # the adapters are LoRAs of --model's base model: every type must serve that model
    archs = {p.arch for p in out.values()} | {default.arch}
    if len(archs) > 1:
        models = sorted({p.hf_model_name for p in (default, *out.values())})
        raise ConfigError("the GPU types' profiles serve different models "
                          f"({', '.join(models)}: other layer shapes)", field="gpu_profile")
    return out


def type_predictors(profiles: dict[str, Profile], surrogates: dict[str, str],
                    max_num_seqs: int) -> tuple[dict[str, GpuPredictor], list[str], set[str]]:
    """Every type's predictor, notes, and the types whose predictor is a capacity transfer.

    Raises
    ------
    ConfigError
        A ``--gpu-surrogate`` for an unknown type, or no type with a surrogate at all.
    """
    unknown = [t for t in surrogates if t not in profiles]
    if unknown:
        raise ConfigError(f"--gpu-surrogate for {unknown[0]!r}, which is not in --gpu-types",
                          field="gpu_surrogate")
    preds: dict[str, GpuPredictor] = {}
    missing = []
    for t, prof in profiles.items():
        try:
            preds[t] = predictor.load_predictor(prof, surrogates.get(t),
                                                max_num_seqs=max_num_seqs)
        except DataError:
            if t in surrogates:
                raise
            missing.append(t)
    if not preds:
        raise ConfigError("no GPU type has a surrogate (give --gpu-surrogate TYPE=S.npz)",
                          field="gpu_surrogate")
    notes = [f"{t}: {predictor.predictor_note(pred)}" for t, pred in preds.items()]
    transferred: set[str] = set()
    for t in missing:
        ref = next(iter(preds))
        ref_pred = preds[ref]
        cap = getattr(getattr(ref_pred, "surrogate", None), "capacity", None)
        if cap is None:
            raise ConfigError(f"GPU type {t!r} has no surrogate and {ref!r}'s predictor has "
                              "no capacity table to transfer from (give --gpu-surrogate)",
                              field="gpu_surrogate")
        preds[t] = CapacityTransferPredictor(
            ref_pred, cap, CapacityTable.build(profiles[t], max_num_seqs))
        transferred.add(t)
        notes.append(f"estimated: {t} ({profiles[t].name}) has no surrogate; {ref}'s is "
                     "carried over by the capacity ratio and every {t} GPU is confirmed in "
                     "the twin".replace("{t}", t))
    return preds, notes, transferred


def check_fleet_flags(algorithm: str, gpus: int | None, emit_vllm: Path | None,
                      advise: bool) -> None:
    """Options of ``place`` that ``--gpu-types`` does not take.

    Raises
    ------
    ConfigError
        ``--algorithm`` other than loratwin, ``--gpus``, ``--emit-vllm`` or ``--advise``.
    """
    for flag, bad in (("algorithm", algorithm != "loratwin"), ("gpus", gpus is not None),
                      ("emit_vllm", emit_vllm is not None), ("advise", advise)):
        if bad:
            raise ConfigError("not available with --gpu-types (use :MAX_COUNT for the "
                              "GPUs of a type)" if flag == "gpus" else
                              "not available with --gpu-types", field=flag)


def run_fleet(*, workload: Path, model: str, gpu_types: Sequence[str],
              gpu_profile: Sequence[str] | None, gpu_surrogate: Sequence[str] | None,
              surrogate: str | None, json_out: Path | None, seed: int, max_num_seqs: int,
              arrival_cv: float, confirm: bool, options: SearchOptions, verify: bool,
              duration: float, jobs: int) -> None:
    """The ``place --gpu-types`` command body (see the module docstring)."""
    check_fleet_surrogate(surrogate)
    parsed = [parse_gpu_type(t) for t in gpu_types]
    names = [p[0] for p in parsed]
    if len(set(names)) != len(names):
        raise ConfigError("a GPU type is given twice", field="gpu_types")
    profiles = type_profiles(names, _pairs(gpu_profile, "gpu_profile"), model)
    choices = type_surrogates(profiles, _pairs(gpu_surrogate, "gpu_surrogate"), surrogate,
                              max_num_seqs)
    with console.status("loading the GPU types' surrogates"):
        preds, notes, transferred = type_predictors(profiles, choices, max_num_seqs)
    adapters = load_adapters(workload)
    types = [GpuType(n, c, m, predictor.make_problem(adapters, profiles[n], predictor=preds[n],
                                                     max_num_seqs=max_num_seqs,
                                                     arrival_cv=arrival_cv),
                     confirm_all=n in transferred)
             for n, c, m in parsed]
    with console.status(f"placing {len(adapters):,} adapters on {len(types)} GPU type(s)"):
        fleet = place_fleet(types, options=options, seed=seed, confirm_borderline=confirm)
    by_name = {t.name: t for t in types}
    servers = list(fleet.placement.servers)
    if verify:
        with console.status(f"verifying {len(servers)} GPU(s) in the twin"):
            servers = [verify_gpus(by_name[t].problem, [g], duration_s=duration,
                                   seed=seed + i, n_jobs=1)[0]
                       for i, (t, g) in enumerate(zip(fleet.types, servers, strict=True))]
    estimated = [t for t in names if by_name[t].estimated or t in transferred]
    console.print(fleet_table(fleet, servers, estimated))
    console.print(candidates_table(fleet, estimated))
    for note in (*notes, *fleet.placement.notes):
        console.print(f"note: {note}")
    if verify:
        bad = [k for k, g in enumerate(servers)
               if g.verified and (g.verified["starvation"] or g.verified["memory_error"])]
        console.print("twin: every GPU keeps up" if not bad else
                      f"[red]twin: GPU(s) {', '.join(map(str, bad))} starve or fail[/red]")
    if json_out is not None:
        write_json(json_out, fleet_doc(fleet, servers, types, estimated,
                                       {a.id: a.rate for a in adapters}))
        console.print(f"wrote {json_out}")


def fleet_table(fleet: FleetPlacement, servers: Sequence[Any], estimated: Sequence[str]
                ) -> Table:
    """One row per GPU: type, adapters, load, flags, predictions (and the twin's)."""
    est = " (estimated: prior profile or transferred surrogate)" if estimated else ""
    table = Table(title=f"fleet: {len(servers)} GPU(s), {fleet.cost_per_hour:,.2f} per hour"
                        + est, header_style="bold", box=None, padding=(0, 1), pad_edge=False)
    for c in ("GPU", "type", "adapters", "req/s", "max_loras", "thr. tok/s", "ITL ms",
              "p(starve)", "twin thr."):
        table.add_column(c, justify="left" if c == "type" else "right", no_wrap=True)
    for k, (t, g) in enumerate(zip(fleet.types, servers, strict=True)):
        p, v = g.predicted, g.verified or {}
        table.add_row(str(k), t + ("*" if t in estimated else ""), str(len(g.adapters)),
                      fmt(g.total_rate, 2), str(g.max_loras),
                      fmt(p.get("total_throughput_tok_s"), 0), fmt(p.get("mean_itl_ms")),
                      fmt(p.get("starvation_probability"), 2),
                      fmt(v.get("total_throughput_tok_s"), 0))
    if estimated:
        table.caption = "* estimated"
    return table


def candidates_table(fleet: FleetPlacement, estimated: Sequence[str]) -> Table:
    """Cost per hour of every candidate fleet (single types and the mixed one)."""
    table = Table(title="candidate fleets", header_style="bold", box=None, padding=(0, 1))
    table.add_column("fleet")
    table.add_column("cost per hour", justify="right")
    for k, v in sorted(fleet.candidates.items(), key=lambda kv: kv[1]):
        mark = " <- chosen" if k == fleet.chosen else ""
        table.add_row(k, ("over a most-GPUs count" if v == float("inf") else f"{v:,.2f}")
                      + mark)
    return table


def fleet_doc(fleet: FleetPlacement, servers: Sequence[Any], types: Sequence[GpuType],
              estimated: Sequence[str], rates: dict[str, float]) -> dict[str, Any]:
    """The ``--json`` document: the ``place --json`` schema, each server with its
    ``gpu_type``, ``profile`` and ``cost_per_hour``, plus a ``fleet`` block."""
    import dataclasses

    by_name = {t.name: t for t in types}
    doc = placement_dict(dataclasses.replace(fleet.placement, servers=tuple(servers)), rates)
    doc["model"] = types[0].problem.profile.hf_model_name
    for k, (s, t) in enumerate(zip(doc["servers"], fleet.types, strict=True)):
        s.update(name=f"gpu-{k}", gpu_type=t, profile=by_name[t].problem.profile.name,
                 cost_per_hour=by_name[t].cost_per_hour, estimated=t in estimated)
    doc["fleet"] = {
        "cost_per_hour": fleet.cost_per_hour, "chosen": fleet.chosen,
        "counts": fleet.counts(),
        "candidates": {k: (v if v != float("inf") else None)
                       for k, v in fleet.candidates.items()},
        "types": {t.name: {"cost_per_hour": t.cost_per_hour, "max_count": t.max_count,
                           "profile": t.problem.profile.name,
                           "profile_kind": t.problem.profile.profile_kind,
                           "estimated": t.name in estimated} for t in types},
    }
    return doc
