"""Batch sweeps produced by the digital twin (``loratwin advise --twin CONFIG.yaml``).

Placeholder: the lead wires the twin in later. The contract is fixed here so that the CLI and
the advisor do not change when it lands.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loratwin.errors import ConfigError


def sweep_from_twin_config(path: str | Path) -> pd.DataFrame:
    """Simulate a ``max_num_seqs`` sweep with the digital twin.

    Parameters
    ----------
    path:
        Twin configuration (YAML).

    Returns
    -------
    pandas.DataFrame
        One row per (model, max_num_seqs[, output_len]) in the sweep schema of
        :mod:`loratwin.advisor.sweep` (at least the columns it documents as required).

    Raises
    ------
    ConfigError
        Always, for now: the twin sweep is not available yet.
    """
    raise ConfigError("the digital twin sweep is not available yet", field="--twin")
