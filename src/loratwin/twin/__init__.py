"""The digital twin of a vLLM 0.8.5 V1 server serving many LoRA adapters.

``simulate(profile, server, adapters, requests, client) -> SimResult`` is the entry point;
the event loop is in :mod:`.engine`, the step-cost model in :mod:`.cost`, the metrics in
:mod:`.metrics`.
"""

from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.metrics import SimMetrics, SimResult
from loratwin.twin.simulate import check_server, simulate

__all__ = ["ClientConfig", "ServerConfig", "SimMetrics", "SimResult", "check_server", "simulate"]
