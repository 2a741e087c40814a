"""loratwin: digital twin, surrogates and GPU placement for multi-LoRA serving on vLLM.

The data flow is one-directional (see ``DESIGN.md``)::

    workload + profile + server config -> twin.simulate() -> SimResult
    SimResult over many configs -> surrogate.train() -> Surrogate
    adapters + Surrogate (+ twin checks) -> placement -> Placement
"""

__version__ = "0.1.0"
