"""Bundled workload data: files present, unchanged, attributed."""

from __future__ import annotations

import hashlib

import pytest

from loratwin.errors import DataError
from loratwin.workload.bundled import (
    azure_code_path,
    azure_conv_path,
    bundled_path,
    resolve_data_path,
    sharegpt_lengths_path,
    workloads_dir,
)

# Full hashes from the data README's workload_stats.json: the copies must be byte-identical.
SHA256 = {
    "azure_llm_inference_2023_conv.csv":
        "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
    "azure_llm_inference_2023_code.csv":
        "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
}


def test_paths_exist_and_azure_files_unchanged() -> None:
    for path in (azure_conv_path(), azure_code_path(), sharegpt_lengths_path()):
        assert path.is_file()
    for name, digest in SHA256.items():
        assert hashlib.sha256((workloads_dir() / name).read_bytes()).hexdigest() == digest


def test_licences_and_attribution_ship_with_the_data() -> None:
    licence = (workloads_dir() / "LICENSE-Apache-2.0.txt").read_text()
    assert "Apache License" in licence[:200] and "Version 2.0, January 2004" in licence
    readme = (workloads_dir() / "README.md").read_text()
    for needle in ("CC-BY 4.0", "https://creativecommons.org/licenses/by/4.0/",
                   "Splitwise: Efficient generative LLM inference using phase", "ISCA 2024",
                   "the files were renamed", "Apache-2.0 §4(b)", "num_prefill_tokens",
                   "num_total_tokens", "LICENSE-Apache-2.0.txt"):
        assert needle in readme


def test_names_resolve() -> None:
    assert resolve_data_path("azure-code") == azure_code_path()
    assert str(resolve_data_path("some/file.csv")) == "some/file.csv"
    with pytest.raises(DataError, match="unknown bundled workload 'azure-x'"):
        bundled_path("azure-x")
