"""vLLM 0.6.3's V0 scheduler (``vllm/core/scheduler.py``), as far as the twin re-states it.

* Chunked prefill is off by default (``--enable-chunked-prefill``; 0.6.3 turns it on by
  itself only for ``max_model_len`` above 32k, which the twin does not do). Without it,
  ``_schedule_default`` runs the waiting prompts that fit in a prefill-only step and the
  running requests' decodes in the next one; the twin prices such a step as two
  (:mod:`loratwin.twin.cost`) but keeps V1's admission order.
* Everything else is 0.8.5's (V1) rules: admission, preemption of the last running request
  (V0 also recomputes by default), no asynchronous scheduling.
"""

from __future__ import annotations

import dataclasses

from loratwin.twin.vllm_0_8_5 import scheduler as v1

RULES = dataclasses.replace(v1.RULES, chunked_prefill_default=False,
                            chunked_prefill_optional=True)
