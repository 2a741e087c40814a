"""The surrogate behind placement: an adapter to :class:`~loratwin.placement.types.GpuPredictor`,
and the construction of a :class:`~loratwin.placement.problem.PlacementProblem` from user
inputs (adapters file, profile name, surrogate).

:class:`SurrogatePredictor` wraps a trained :class:`loratwin.surrogate.model.Surrogate` (a
bundled one found by the profile name, or a ``.npz`` file) and returns the placement layer's
:class:`~loratwin.placement.types.Predictions` (throughput in tok/s, ITL and TTFT in ms,
starvation probability, out-of-envelope flags).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from loratwin.errors import ConfigError
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuPredictor, Predictions
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.model import Surrogate
from loratwin.surrogate.universal import BoundSurrogate, UniversalSurrogate
from loratwin.twin.release import normalise_version
from loratwin.workload.adapters import load_adapters
from loratwin.workload.types import Adapter


class SurrogatePredictor:
    """A trained surrogate as a :class:`GpuPredictor` (batch predictions of feature rows).

    Parameters
    ----------
    surrogate:
        The trained surrogate (see :mod:`loratwin.surrogate.model`).
    """

    def __init__(self, surrogate: Surrogate | BoundSurrogate) -> None:
        self.surrogate = surrogate

    @classmethod
    def load(cls, name_or_path: str | Path) -> SurrogatePredictor:
        """A bundled surrogate by profile name, or a surrogate ``.npz`` file.

        Raises
        ------
        DataError
            Unknown name, missing or invalid file.
        """
        return cls(Surrogate.load(name_or_path))

    @property
    def profile(self) -> str:
        """Name of the profile the surrogate was trained for."""
        return self.surrogate.profile

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """Predictions for (n, 10) feature rows (columns of ``surrogate.features.FEATURES``);
        only the models of ``fields`` are run (None: all; see :class:`GpuPredictor`)."""
        p = self.surrogate.predict(features, fields)
        return Predictions(
            total_throughput_tok_s=np.asarray(p.total_throughput_tok_s, float),
            mean_itl_ms=np.asarray(p.mean_itl_ms, float),
            mean_ttft_ms=np.asarray(p.mean_ttft_ms, float),
            p99_ttft_ms=np.asarray(p.p99_ttft_ms, float),
            starvation_probability=np.asarray(p.starvation_probability, float),
            out_of_envelope=np.asarray(p.out_of_envelope, bool),
        )


def load_predictor(profile: Profile, surrogate: str | Path | None = None, *,
                   max_num_seqs: int = 2048) -> SurrogatePredictor:
    """The surrogate for ``profile``: the given name / ``.npz`` file, ``universal``,
    ``on-the-fly`` or ``auto`` (:func:`~loratwin.surrogate.on_the_fly.resolve_choice`; by
    default the profile's bundled per-profile surrogate, else the bundled universal
    surrogate bound to the profile, :mod:`loratwin.surrogate.universal`, its scales
    tabulated at ``max_num_seqs``, ~1-2 s). :func:`predictor_note` says which one answers.

    Raises
    ------
    DataError
        An invalid file, or no bundled surrogate at all.
    ConfigError
        The surrogate was trained for another profile.
    """
    from loratwin.surrogate.on_the_fly import UNIVERSAL, resolve_choice

    choice = resolve_choice(profile, None if surrogate is None else str(surrogate),
                            max_num_seqs=max_num_seqs)
    if choice == UNIVERSAL:
        return SurrogatePredictor(UniversalSurrogate.load().bind(profile, max_num_seqs))
    pred = SurrogatePredictor.load(choice if choice is not None else profile.name)
    if pred.profile and pred.profile != profile.name:
        raise ConfigError(
            f"the surrogate was trained for {pred.profile!r}, not for {profile.name!r}",
            field="surrogate",
        )
    return pred


def predictor_note(predictor: GpuPredictor) -> str:
    """One line naming the surrogate behind ``predictor``: the profile's own (bundled or a
    file) or the universal one (whose figures are estimates)."""
    sur = getattr(predictor, "surrogate", None)
    if sur is None:
        return f"surrogate: {type(predictor).__name__}"
    describe = getattr(sur, "describe", None)
    if describe is not None:
        return str(describe())
    if isinstance(sur, Surrogate) and sur.meta.get("on_the_fly"):
        from loratwin.surrogate.on_the_fly import on_the_fly_note

        return on_the_fly_note(sur)
    n = sur.meta.get("dataset", {}).get("used")
    rows = f" on {n:,} of its twin runs" if isinstance(n, int) else ""
    return f"surrogate: {sur.profile}'s own (per-profile, trained{rows})"


def make_problem(
    adapters: Sequence[Adapter] | str | Path,
    model: str | Path | Profile = "llama-3.1-8b-instruct",
    *,
    surrogate: str | Path | None = None,
    predictor: GpuPredictor | None = None,
    max_num_seqs: int = 2048,
    arrival_cv: float = 1.0,
    vllm_version: str | None = None,
) -> PlacementProblem:
    """A placement problem from user inputs.

    Parameters
    ----------
    adapters:
        Adapters, or a CSV/YAML file of them (``id,rank,rate[,mean_input_tokens,
        mean_output_tokens]``, rate in req/s).
    model:
        Profile name, profile JSON path, or a loaded profile.
    surrogate:
        Surrogate name or ``.npz`` (default: the profile's bundled surrogate, else the
        universal one, see :func:`load_predictor`).
    predictor:
        A ready predictor (overrides ``surrogate``).
    max_num_seqs:
        ``--max-num-seqs`` of every server.
    arrival_cv:
        Burstiness of the arrivals (1 = Poisson).
    vllm_version:
        vLLM release of the servers (default: the profile's).

    Raises
    ------
    LoraTwinError
        Invalid adapters, unknown profile or surrogate, ranks that fit no GPU.
    """
    profile = model if isinstance(model, Profile) else load_profile(model)
    ads = load_adapters(adapters) if isinstance(adapters, str | Path) else list(adapters)
    if max_num_seqs < 1:
        raise ConfigError(f"must be >= 1 (got {max_num_seqs})", field="max_num_seqs")
    if not arrival_cv > 0:
        raise ConfigError(f"must be > 0 (got {arrival_cv})", field="arrival_cv")
    if vllm_version is not None:
        vllm_version = normalise_version(vllm_version)
    return PlacementProblem(
        ads, profile, predictor or load_predictor(profile, surrogate),
        max_num_seqs=max_num_seqs, arrival_cv=arrival_cv, vllm_version=vllm_version,
    )
