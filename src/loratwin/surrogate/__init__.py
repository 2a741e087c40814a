"""Surrogates of the twin: ML models that predict a GPU configuration in microseconds.

As in Agullo et al. (arXiv 2508.08343 / 2602.24044), the twin is distilled into tree models
so that placement can score thousands of candidate GPU configurations:

1. :mod:`.design` - the sampling design (the papers' grid plus Sobol samples between it);
2. :mod:`.dataset` - twin runs over the design in resumable Parquet chunks (joblib / Ray);
3. :mod:`.train` - gradient boosting / random forests chosen by cross-validation, one small
   interpretable tree per target (:mod:`.explain`);
4. :mod:`.model` - the :class:`Surrogate` (safe ``.npz`` file, batch and single-row
   prediction, training envelope), evaluated by :mod:`.trees` exactly as scikit-learn does.

Python API::

    from loratwin.surrogate import Surrogate
    s = Surrogate.load("llama-3.1-8b-instruct")       # bundled, or a path to a .npz
    p = s.predict(x)                                   # x: (n, 10) in FEATURES order
    p.total_throughput_tok_s, p.starvation             # arrays (n,)
    one = s.predict_one(x[0].tolist())                 # plain-Python path for one row
    one = s.predict_gpu(adapters, max_loras=32)        # features from the adapters

Rebuild the bundled surrogates (``loratwin/surrogate/bundled/<profile>.npz``) with::

    loratwin surrogate rebuild --model llama-3.1-8b-instruct --jobs -1
    loratwin surrogate rebuild --model qwen-2.5-7b-instruct --jobs -1

which runs (or resumes) the default design of ``examples/surrogate-grid.yaml`` into
``surrogate-data/<profile>`` and trains into the package; the same as::

    loratwin dataset examples/surrogate-grid.yaml --model <profile> \\
        --out surrogate-data/<profile> --jobs -1
    loratwin train surrogate-data/<profile> --model <profile> \\
        -o src/loratwin/surrogate/bundled/<profile>.npz

The universal surrogate (``bundled/universal.npz``, :mod:`.universal`: profile-normalised
inputs, one model for every profile; placement falls back to it for a profile without a
bundled surrogate of its own) is rebuilt, resumably, by::

    loratwin surrogate universal --jobs 2

which runs the twin for the two measured profiles and eight priors of
:mod:`.universal_build` into ``surrogate-data/universal/<profile>`` and trains with
leave-one-profile-out scores on the measured ones. Data: the measured profiles come from
the measurements of Agullo et al. (arXiv 2508.08343 / 2602.24044, repository
FerranAgulloLopez/GPULLMAdapterOptimization, see ``../shared/data/README.md``); the priors
from public model configs and GPU datasheets (:mod:`loratwin.calibrate.prior_gpu`); every
training row is a twin run.
"""

from loratwin.surrogate.features import FEATURES, feature_frame, gpu_features
from loratwin.surrogate.model import PointPrediction, Predictions, Surrogate, bundled_surrogates

__all__ = [
    "FEATURES",
    "PointPrediction",
    "Predictions",
    "Surrogate",
    "bundled_surrogates",
    "feature_frame",
    "gpu_features",
]
