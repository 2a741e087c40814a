"""Paths of the workload data files shipped inside the package (``loratwin/data/workloads``).

The files and their licences are described in ``loratwin/data/workloads/README.md``:
the two Azure LLM inference traces 2023 (CC-BY 4.0) and the sarathi-serve ShareGPT length
table (Apache-2.0).

Short names accepted wherever a trace or length table is expected:

==================  ===========================================================
``azure-conv``      Azure LLM inference trace 2023, conversation service
``azure-code``      Azure LLM inference trace 2023, coding service
``sharegpt-llama2`` ShareGPT prompt/output token counts (Llama-2 tokenizer)
==================  ===========================================================
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from loratwin.errors import DataError

AZURE_CONV_FILE = "azure_llm_inference_2023_conv.csv"
AZURE_CODE_FILE = "azure_llm_inference_2023_code.csv"
SHAREGPT_LENGTHS_FILE = "sharegpt_lengths_llama2_tokenizer.csv"

#: Short name -> file name inside ``loratwin/data/workloads``.
BUNDLED_FILES: dict[str, str] = {
    "azure-conv": AZURE_CONV_FILE,
    "azure-code": AZURE_CODE_FILE,
    "sharegpt-llama2": SHAREGPT_LENGTHS_FILE,
}


def workloads_dir() -> Path:
    """Directory of the bundled workload files.

    The package is installed as regular files (pip never installs it zipped), so the
    ``importlib.resources`` location is a real directory.
    """
    return Path(str(files("loratwin").joinpath("data", "workloads")))


def bundled_path(name: str) -> Path:
    """Path of a bundled file from its short name (see the module docstring).

    Raises
    ------
    DataError
        If ``name`` is not a known short name or the file is missing from the install.
    """
    if name not in BUNDLED_FILES:
        known = ", ".join(sorted(BUNDLED_FILES))
        raise DataError(f"unknown bundled workload {name!r} (known: {known})")
    path = workloads_dir() / BUNDLED_FILES[name]
    if not path.is_file():
        raise DataError(f"bundled workload file missing from the installation: {path}")
    return path


def azure_conv_path() -> Path:
    """Path of the Azure LLM inference trace 2023, conversation service (19,366 rows)."""
    return bundled_path("azure-conv")


def azure_code_path() -> Path:
    """Path of the Azure LLM inference trace 2023, coding service (8,819 rows)."""
    return bundled_path("azure-code")


def sharegpt_lengths_path() -> Path:
    """Path of the sarathi-serve ShareGPT length table (30,731 rows, Llama-2 tokenizer)."""
    return bundled_path("sharegpt-llama2")


def resolve_data_path(name_or_path: str | Path) -> Path:
    """Turn a short bundled name or a file path into a path.

    A string equal to one of :data:`BUNDLED_FILES` names the bundled file; anything else is
    taken as a path (not checked here; the loaders report a missing file).
    """
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_FILES:
        return bundled_path(name_or_path)
    return Path(name_or_path)
