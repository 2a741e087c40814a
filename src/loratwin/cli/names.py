"""Names the command modules show in their help texts, without importing the library.

``loratwin --help`` must not import numpy, pandas or scikit-learn (issue 16), so the few
library constants a help text mentions are repeated here; ``tests/cli/test_startup.py``
checks that they equal the library's.
"""

from __future__ import annotations

DEFAULT_MODEL = "llama-3.1-8b-instruct"
"""The default profile (a bundled one)."""

ALGORITHMS: tuple[str, ...] = ("loratwin", "paper-greedy", "max-backbone", "least-loaded",
                               "loraserve", "dlora-proactive", "random")
"""= :data:`loratwin.placement.api.ALGORITHMS`."""

EXACT_MAX_ADAPTERS = 40
"""= :data:`loratwin.placement.exact.MAX_ADAPTERS`."""

BUNDLED_SWEEP_NAMES: tuple[str, ...] = ("bundled:fixed-length", "bundled:sharegpt")
"""``bundled:`` + each key of :data:`loratwin.advisor.sweep.BUNDLED_SWEEPS`."""
