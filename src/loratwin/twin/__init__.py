"""The digital twin of a vLLM V1 server serving many LoRA adapters (releases 0.8.5, 0.32, 0.33;
the V0 engine of 0.6.3 in part).

``simulate(profile, server, adapters, requests, client) -> SimResult`` is the entry point;
the event loop is in :mod:`.engine`, the step-cost model in :mod:`.cost`, the metrics in
:mod:`.metrics`, the rules of each vLLM release in ``vllm_<release>/`` (registry:
:mod:`.release`).
"""

from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.metrics import SimMetrics, SimResult
from loratwin.twin.simulate import check_server, simulate

__all__ = ["ClientConfig", "ServerConfig", "SimMetrics", "SimResult", "check_server", "simulate"]
