"""``router`` emitter: ``router.json``, a plain adapter -> servers table for any other router.

Schema (``"format": "loratwin-router/1"``)::

    {"format": ..., "model": <base model>, "algorithm": ...,
     "servers": [{"name", "index", "api_base", "adapters": <count>}],
     "adapters": {<id>: [{"server", "api_base", "share"}]}}

``share`` is the fraction of the adapter's requests that server should get; the shares of
one adapter add up to 1.
"""

from __future__ import annotations

import json
from typing import Any

from loratwin.deploy.fleet import Fleet
from loratwin.deploy.options import EmitOptions

FORMAT = "loratwin-router/1"


def table(fleet: Fleet) -> dict[str, Any]:
    """The routing table as a JSON-ready dict."""
    return {
        "format": FORMAT,
        "model": fleet.hf_model,
        "algorithm": fleet.algorithm,
        "servers": [{"name": s.name, "index": s.index, "api_base": s.api_base,
                     "adapters": len(s.adapters)} for s in fleet.servers],
        "adapters": {aid: [{"server": s.name, "api_base": s.api_base,
                            "share": round(a.share, 6)} for s, a in holders]
                     for aid, holders in fleet.replicas().items()},
    }


def render(fleet: Fleet, options: EmitOptions) -> dict[str, str]:
    """``router.json``."""
    return {"router.json": json.dumps(table(fleet), indent=2) + "\n"}
