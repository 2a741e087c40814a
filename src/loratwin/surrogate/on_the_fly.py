"""A per-profile surrogate trained on the fly, for profiles the universal one serves badly.

A profile without a bundled surrogate of its own (a physics prior, a collected profile)
is answered by the universal surrogate (:mod:`.universal`) unless its leave-one-profile-out
accuracy misses the issue's targets (:func:`universal_sufficient`: throughput SMAPE <= 4 %
and starvation F1 >= 0.96 on every held-out measured profile). Then, or when asked for
(``--surrogate on-the-fly``), loratwin trains a per-profile surrogate of that profile with
the code of ``loratwin surrogate rebuild``: twin runs of a reduced design
(:data:`QUICK_DESIGN`: 32 points of the papers' grid and 96 Sobol points, 1,800 s windows,
128 runs, a few minutes on 2 cores) through :func:`~loratwin.surrogate.dataset.generate_dataset`
(resumable chunks), then :func:`~loratwin.surrogate.train.train_surrogate` with one
estimator per target (:data:`QUICK_TRAINING`, no model search).

The runs and the surrogate are cached on disk (:func:`default_cache_dir`, or
``LORATWIN_SURROGATE_CACHE``) in a folder keyed by the profile's name and the fingerprint of
the design and of the profile's content (:func:`~loratwin.surrogate.design.spec_fingerprint`,
SHA-256 of the profile JSON): the next call with the same profile loads the file in
milliseconds, an interrupted call resumes its runs, and an edited profile gets a new folder.
The surrogate's metadata says it was made on the fly (``meta["on_the_fly"]``), so outputs
name it (:func:`surrogate_kind`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.surrogate.design import DesignSpec, GridSpec, QmcSpec, spec_fingerprint
from loratwin.surrogate.model import Surrogate
from loratwin.surrogate.train import DEFAULT_CLASSIFIERS, DEFAULT_REGRESSORS, TrainConfig

#: ``--surrogate`` values that are no file: the universal surrogate, the per-profile one
#: trained on the fly, and the universal one unless its held-out accuracy is insufficient.
UNIVERSAL = "universal"
ON_THE_FLY = "on-the-fly"
AUTO = "auto"
CHOICES: tuple[str, ...] = (UNIVERSAL, ON_THE_FLY, AUTO)

#: The issue's acceptance of a profile-normalised surrogate (issue 13): throughput SMAPE
#: (%) at most, starvation F1 at least, on the held-out twin runs of every measured profile.
MAX_THROUGHPUT_SMAPE_PCT = 4.0
MIN_STARVATION_F1 = 0.96

#: The reduced design of an on-the-fly surrogate (128 twin runs of 1,800 s).
QUICK_DESIGN = DesignSpec(seed=7, duration_s=1800.0, chunk_size=8, grid=GridSpec(points=32),
                          qmc=QmcSpec(points=96))
#: One estimator per target (the universal surrogate's), 3-fold CV, 20 % hold-out.
QUICK_TRAINING = TrainConfig(
    folds=3, holdout_fraction=0.2, regressors=(DEFAULT_REGRESSORS[0],),
    classifiers=(DEFAULT_CLASSIFIERS[0],), throughput_transforms=("fraction",),
    latency_transforms=("log",))
SURROGATE_FILE = "surrogate.npz"

#: Called with (twin runs done, twin runs in all) while the runs go.
RunsCallback = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """``$LORATWIN_SURROGATE_CACHE``, else ``$XDG_CACHE_HOME/loratwin/surrogates``, else
    ``~/.cache/loratwin/surrogates``."""
    env = os.environ.get("LORATWIN_SURROGATE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loratwin" / "surrogates"


def cache_folder(profile: Profile, spec: DesignSpec, cache_dir: Path) -> Path:
    """The folder of ``profile``'s on-the-fly surrogate made with ``spec``:
    ``<cache>/<name>-<fingerprint of the design and the profile's JSON>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", profile.name)[:80] or "profile"
    return cache_dir / f"{safe}-{spec_fingerprint(spec, profile)}"


def universal_sufficient(meta: dict[str, Any]) -> bool:
    """Whether the universal surrogate's leave-one-profile-out scores (``meta``) meet
    :data:`MAX_THROUGHPUT_SMAPE_PCT` and :data:`MIN_STARVATION_F1` on every held-out
    profile (False when it has none)."""
    loo = meta.get("leave_one_out") or {}
    if not loo:
        return False
    try:
        return all(float(sc["total_throughput_tok_s"]["smape"]) <= MAX_THROUGHPUT_SMAPE_PCT
                   and float(sc["starvation"]["f1"]) >= MIN_STARVATION_F1
                   for sc in loo.values())
    except (KeyError, TypeError, ValueError):
        return False


def cached_path(profile: Profile, *, max_num_seqs: int = 2048, cache_dir: Path | None = None,
                spec: DesignSpec | None = None) -> Path:
    """Where ``profile``'s on-the-fly surrogate (made with ``spec``, default
    :data:`QUICK_DESIGN`, at ``max_num_seqs``) is or will be cached."""
    spec = (spec or QUICK_DESIGN).model_copy(update={"model": profile.name,
                                                     "max_num_seqs": max_num_seqs})
    return cache_folder(profile, spec, cache_dir or default_cache_dir()) / SURROGATE_FILE


def ensure_on_the_fly(profile: Profile, *, max_num_seqs: int = 2048,
                      cache_dir: Path | None = None, spec: DesignSpec | None = None,
                      training: TrainConfig | None = None, jobs: int = 1,
                      on_runs: RunsCallback | None = None) -> Path:
    """The ``.npz`` of ``profile``'s on-the-fly surrogate: the cached file, else made (twin
    runs of ``spec`` at ``max_num_seqs``, resumable, then trained with ``training``;
    defaults :data:`QUICK_DESIGN` and :data:`QUICK_TRAINING`) and cached.

    Raises
    ------
    DataError
        The runs are incomplete, or too few usable rows to train.
    """
    path = cached_path(profile, max_num_seqs=max_num_seqs, cache_dir=cache_dir, spec=spec)
    if path.is_file():
        return path
    spec = (spec or QUICK_DESIGN).model_copy(update={"model": profile.name,
                                                     "max_num_seqs": max_num_seqs})
    _run(profile, spec, path.parent / "runs", jobs, on_runs)
    sur = _train(profile, spec, path.parent, training or QUICK_TRAINING)
    tmp = path.with_name(f".{SURROGATE_FILE}.{os.getpid()}.tmp.npz")
    sur.save(tmp)
    os.replace(tmp, path)
    return path


def resolve_choice(profile: Profile, surrogate: str | None, *, max_num_seqs: int = 2048,
                   cache_dir: Path | None = None,
                   on_runs: RunsCallback | None = None) -> str | None:
    """What answers for ``profile`` given ``--surrogate``: a file or bundled name (returned
    as given), :data:`UNIVERSAL`, or the path of the on-the-fly surrogate (made if needed).

    - ``on-the-fly``: the on-the-fly surrogate;
    - ``auto``: the profile's bundled surrogate, else the universal one if
      :func:`universal_sufficient`, else the on-the-fly one;
    - ``None`` (the default): the bundled one, else the universal one, unless its accuracy
      is insufficient and an on-the-fly surrogate of the profile is already cached (no twin
      run is started without being asked).
    """
    from loratwin.surrogate.model import bundled_surrogates
    from loratwin.surrogate.universal import UniversalSurrogate

    if surrogate not in (None, ON_THE_FLY, AUTO):
        return surrogate
    if surrogate != ON_THE_FLY and profile.name in bundled_surrogates():
        return profile.name
    if surrogate != ON_THE_FLY and universal_sufficient(UniversalSurrogate.load().meta):
        return UNIVERSAL
    path = cached_path(profile, max_num_seqs=max_num_seqs, cache_dir=cache_dir)
    if surrogate is None:
        return str(path) if path.is_file() else UNIVERSAL
    return str(ensure_on_the_fly(profile, max_num_seqs=max_num_seqs, cache_dir=cache_dir,
                                 on_runs=on_runs))


def _run(profile: Profile, spec: DesignSpec, data_dir: Path, jobs: int,
         on_runs: RunsCallback | None) -> None:
    """The twin runs of ``spec`` into ``data_dir`` (those on disk are kept)."""
    from loratwin.surrogate.dataset import generate_dataset

    total = spec.grid.points + spec.qmc.points
    done = [0]

    def start(todo: int, _chunks: int) -> None:
        done[0] = total - todo
        if on_runs is not None:
            on_runs(done[0], total)

    def chunk(c: Any) -> None:
        done[0] += int(c.points)
        if on_runs is not None:
            on_runs(done[0], total)

    run = generate_dataset(spec, data_dir, jobs=jobs, profile=profile, on_start=start,
                           on_chunk=chunk)
    if run.remaining_chunks:
        raise DataError(f"{data_dir}: the twin runs are incomplete")


def _train(profile: Profile, spec: DesignSpec, folder: Path,
           training: TrainConfig) -> Surrogate:
    """Train on the folder's runs; the metadata records that it was made on the fly."""
    from loratwin.surrogate.dataset import load_dataset
    from loratwin.surrogate.train import train_surrogate

    ds = load_dataset(folder / "runs")
    sur = train_surrogate(ds, training, model=profile.name, profile=profile).surrogate
    sur.meta["on_the_fly"] = {"runs": len(ds.rows), "duration_s": spec.duration_s,
                              "max_num_seqs": spec.max_num_seqs, "folder": str(folder)}
    return sur


def surrogate_kind(surrogate: object) -> str:
    """``universal``, ``on-the-fly`` or ``per-profile``: which kind of surrogate answers."""
    kind = getattr(surrogate, "kind", None)
    if isinstance(kind, str):
        return kind
    meta = getattr(surrogate, "meta", None) or {}
    return ON_THE_FLY if meta.get("on_the_fly") else "per-profile"


def on_the_fly_note(surrogate: Surrogate) -> str:
    """One line naming an on-the-fly surrogate, its runs, hold-out scores and cache."""
    info = surrogate.meta.get("on_the_fly", {})
    ho = surrogate.meta.get("holdout", {})
    scores = ""
    if "total_throughput_tok_s" in ho and "starvation" in ho:
        scores = (f"; hold-out throughput SMAPE {ho['total_throughput_tok_s']['smape']:.1f} %,"
                  f" starvation F1 {ho['starvation']['f1']:.2f}")
    return (f"surrogate: on-the-fly (per-profile, trained on {info.get('runs', '?')} twin runs "
            f"of {surrogate.profile}, {float(info.get('duration_s', 0)):,.0f} s windows"
            f"{scores}; cached in {info.get('folder', '?')})")
