"""Workloads: adapters, arrival processes, request length distributions and traces.

One job per module (import the function from its module; this package module stays light so
that ``loratwin.workload.types`` can be imported without pandas or scipy):

- :mod:`~loratwin.workload.types`: ``Adapter`` and ``Requests`` value types.
- :mod:`~loratwin.workload.adapters`: read / write / validate adapter lists (CSV, YAML).
- :mod:`~loratwin.workload.arrivals`: per-adapter Poisson and gamma-renewal arrivals.
- :mod:`~loratwin.workload.lengths`: (input, output) token length distributions and
  per-adapter sampling; the heavy-tailed family lives in
  :mod:`~loratwin.workload.heavy_tailed`, the filter window in
  :mod:`~loratwin.workload.window`.
- :mod:`~loratwin.workload.trace`: request-trace CSVs and the Azure LLM inference traces.
- :mod:`~loratwin.workload.spec`: the YAML config models and ``generate_requests``.
- :mod:`~loratwin.workload.from_trace`: adapters synthesised from a trace (Agullo et al.).
- :mod:`~loratwin.workload.bundled`: paths of the bundled data files.
- ``_csvio``: CSV reading with row-numbered errors (private).
"""

from loratwin.workload.types import Adapter, Requests

__all__ = ["Adapter", "Requests"]
