"""The training set of the bundled universal surrogate: which profiles, which twin runs.

Profiles (:func:`training_profiles`): the two bundled measured profiles (Llama-3.1-8B and
Qwen2.5-7B on an H100 64 GB, measurements of Agullo et al., arXiv 2508.08343, shared data
``../shared/data/profiles/``) and eight physics priors (:mod:`loratwin.calibrate.prior`) of
other models on other GPUs (:data:`TRAINING_PRIORS`): four calibrated on the Qwen profile
only, four on the Llama profile only. Leave-one-profile-out then holds out a measured
profile together with every prior calibrated on it (:func:`loo_training_names`), so the
held-out profile's measurements reach the model in no way. The Qwen3-8B prior on the H200
is deliberately not among them (the README's example of a profile nobody measured).

Design (:data:`DESIGN`): 64 points of the papers' grid and 192 Sobol points of the default
design (:mod:`.design`), all of them for the measured profiles and the first
:data:`PRIOR_CHUNKS` chunks (128 points, a seeded random half) for each prior; 1,800 s windows
(half the measured runs' hour, for compute: the starvation label and the throughput of a
window are steady-state quantities; the TTFT of hopelessly overloaded servers grows with
the window, which the ``window_steps`` input carries). 1,536 twin runs in all, ~15 min on
one idle core.

Rebuild (resumable; data in ``surrogate-data/universal/<profile>``)::

    loratwin surrogate universal --jobs 2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loratwin.profile.model import Profile
from loratwin.surrogate.design import DesignSpec, GridSpec, QmcSpec

#: Measured profiles in the training set (bundled).
MEASURED: tuple[str, ...] = ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct")


@dataclass(frozen=True)
class PriorSpec:
    """One prior of the training set: model config, GPU and calibration profile."""

    hf_config: str
    gpu: str
    calibrate_on: str

    @property
    def name(self) -> str:
        """Profile name, e.g. ``llama-3.1-8b-h100-sxm-80gb-prior-on-qwen``."""
        return f"{self.hf_config}-{self.gpu}-prior-on-{self.calibrate_on.split('-')[0]}"


TRAINING_PRIORS: tuple[PriorSpec, ...] = (
    PriorSpec("llama-3.1-8b", "h100-sxm-80gb", "qwen-2.5-7b-instruct"),
    PriorSpec("mistral-7b", "a100-80gb", "qwen-2.5-7b-instruct"),
    PriorSpec("gemma-2-9b", "l40s", "qwen-2.5-7b-instruct"),
    PriorSpec("qwen3-8b", "b200", "qwen-2.5-7b-instruct"),
    PriorSpec("qwen2.5-7b", "a100-80gb", "llama-3.1-8b-instruct"),
    PriorSpec("llama-3.1-8b", "h200", "llama-3.1-8b-instruct"),
    PriorSpec("mistral-7b", "l40s", "llama-3.1-8b-instruct"),
    PriorSpec("gemma-2-9b", "b200", "llama-3.1-8b-instruct"),
)

#: The design every training profile runs (``model`` is set per profile).
DESIGN = DesignSpec(seed=11, duration_s=1800.0, chunk_size=16, grid=GridSpec(points=64),
                    qmc=QmcSpec(points=192))
#: Chunks of :data:`DESIGN` run for a prior (the first ones of the shuffled design: 128 of
#: the 256 points); the measured profiles run all 16, which are also the held-out rows of
#: leave-one-profile-out.
PRIOR_CHUNKS = 8


def build_training_prior(spec: PriorSpec) -> Profile:
    """The prior profile of ``spec`` (``loratwin profile prior --hf-config H --gpu G
    --calibrate-on C --name N``)."""
    from loratwin.calibrate.prior import build_prior, calibrate
    from loratwin.calibrate.prior_gpu import load_gpu
    from loratwin.calibrate.prior_model import load_model_spec
    from loratwin.profile.store import load_profile

    calib = calibrate([load_profile(spec.calibrate_on)])
    return build_prior(load_model_spec(spec.hf_config), load_gpu(spec.gpu), calib,
                       name=spec.name)


def training_profiles() -> list[Profile]:
    """The measured profiles then the priors of :data:`TRAINING_PRIORS` (a few seconds)."""
    from loratwin.profile.store import load_profile

    return [load_profile(n) for n in MEASURED] + [build_training_prior(s)
                                                  for s in TRAINING_PRIORS]


def calibrated_on(profile: Profile) -> set[str]:
    """Names of the measured profiles a prior was calibrated on (empty for the others)."""
    text = str(profile.fit_report.get("prior", {}).get("calibrated_on", ""))
    return {n.strip() for n in text.split(",") if n.strip()}


def loo_training_names(profiles: list[Profile], held_out: str) -> list[str]:
    """Profiles to train on when ``held_out`` is the test profile: all but it and the
    priors calibrated on it."""
    return [p.name for p in profiles if p.name != held_out and held_out not in calibrated_on(p)]


def chunks_of(profile: Profile) -> int | None:
    """Chunks of :data:`DESIGN` used for ``profile`` (``None``: all)."""
    return PRIOR_CHUNKS if profile.profile_kind == "prior" else None


def generate_training_data(
    data_dir: Path, profiles: list[Profile], *, jobs: int = 1,
    on_profile: Callable[[str, int, int], None] | None = None,
    on_chunk: Callable[..., None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> None:
    """Run (or resume) :data:`DESIGN` for every profile into ``data_dir/<profile>``.

    ``on_profile(name, index, count)`` is called before each profile; ``on_start`` and
    ``on_chunk`` are passed to :func:`~loratwin.surrogate.dataset.generate_dataset`.
    """
    from loratwin.surrogate.dataset import generate_dataset

    for k, prof in enumerate(profiles):
        if on_profile is not None:
            on_profile(prof.name, k, len(profiles))
        generate_dataset(DESIGN.model_copy(update={"model": prof.name}), data_dir / prof.name,
                         jobs=jobs, profile=prof, on_start=on_start, on_chunk=on_chunk,
                         first_chunks=chunks_of(prof))
