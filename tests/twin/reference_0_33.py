"""The literal re-statement of vLLM 0.33's V1 scheduling loop.

vLLM 0.33's ``schedule()`` is 0.32's (``reference_0_32``) but for one rule: the adapters of
*all* running requests count against ``max_loras`` (``scheduled_loras = set(... for req in
self.running ...)``), including a request whose last token is still in flight.
"""

from __future__ import annotations

from functools import partial

from tests.twin.reference_0_32 import reference_run as _reference_run_0_32

reference_run = partial(_reference_run_0_32, count_all_running_loras=True)
