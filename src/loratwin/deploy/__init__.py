"""From plan to fleet: deployable objects for a placement plan, one emitter per format.

Every emitter has the same shape, ``render(fleet, options) -> {file name: text}``, a pure
function of the :class:`~loratwin.deploy.fleet.Fleet` (built from the plan document of
``loratwin place --json``) and the :class:`~loratwin.deploy.options.EmitOptions`;
:func:`write` puts the files of one format into a folder. Formats (:data:`FORMATS`):

* ``vllm``: one ``vllm serve`` bash script per GPU server;
* ``kubernetes``: a Deployment and a Service per server;
* ``kserve``: an ``LLMInferenceService`` per server;
* ``litellm``: a LiteLLM proxy config;
* ``router``: ``router.json``, adapter -> servers with each replica's share of the traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from loratwin.deploy.fleet import Fleet
from loratwin.deploy.options import EmitOptions
from loratwin.errors import ConfigError

Emitter = Callable[[Fleet, EmitOptions], dict[str, str]]

#: format name -> module with its ``render`` function
FORMATS: dict[str, str] = {
    "vllm": "loratwin.deploy.vllm",
    "kubernetes": "loratwin.deploy.kubernetes",
    "kserve": "loratwin.deploy.kserve",
    "litellm": "loratwin.deploy.litellm",
    "router": "loratwin.deploy.router",
}
_ALIASES = {"router.json": "router", "k8s": "kubernetes"}


def format_name(name: str) -> str:
    """The canonical format name (``router.json`` -> ``router``, ``k8s`` -> ``kubernetes``).

    Raises
    ------
    ConfigError
        Unknown format.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in FORMATS:
        raise ConfigError(f"unknown format {name!r} (one of {', '.join(FORMATS)})",
                          field="emit")
    return key


def emitter(name: str) -> Emitter:
    """The ``render`` function of a format."""
    render: Emitter = import_module(FORMATS[format_name(name)]).render
    return render


def render(name: str, fleet: Fleet, options: EmitOptions | None = None) -> dict[str, str]:
    """Files of format ``name`` for ``fleet``: {file name: text}."""
    return emitter(name)(fleet, options or EmitOptions())


def write(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write ``files`` into ``out_dir`` (created); ``*.sh`` files are made executable."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
        paths.append(path)
    return paths
