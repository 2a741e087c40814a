"""``vllm`` emitter: one bash script per GPU server running ``vllm serve`` with its flags.

The script listens on ``$PORT`` (default 8000) and loads the adapters from
``<lora_dir>/<id>`` on the host (``--lora-dir``).
"""

from __future__ import annotations

import math
import shlex

from loratwin.deploy.fleet import Fleet, ServerSpec, local_modules
from loratwin.deploy.options import EmitOptions


def vllm_argv(server: ServerSpec, hf_model: str, lora_dir: str) -> list[str]:
    """The ``vllm serve`` argument list of one server (without ``--port``)."""
    return ["vllm", "serve", hf_model, *server.flags(), "--lora-modules",
            *local_modules(server, lora_dir)]


def script(server: ServerSpec, fleet: Fleet, lora_dir: str) -> str:
    """A bash script starting ``server`` (exec, so that signals reach vLLM)."""
    argv = vllm_argv(server, fleet.hf_model, lora_dir)
    head = argv[: argv.index("--lora-modules")]
    mods = argv[len(head) + 1:]
    p = server.predicted
    rate = sum(a.rate_req_s for a in server.adapters)
    lines = [
        "#!/usr/bin/env bash",
        f"# loratwin placement ({fleet.algorithm}): GPU {server.index} of {len(fleet.servers)}, "
        f"{len(server.adapters)} adapter(s), {rate:.4g} req/s",
        f"# predicted{' (estimated profile)' if fleet.profile_kind == 'prior' else ''}: "
        f"{p.get('total_throughput_tok_s', math.nan):,.0f} tok/s, ITL "
        f"{p.get('mean_itl_ms', math.nan):.1f} ms, TTFT {p.get('mean_ttft_ms', math.nan):.1f} ms, "
        f"p(starve) {p.get('starvation_probability', math.nan):.3f}",
    ]
    if server.max_lora_rank != server.planned_max_lora_rank:
        lines.append(f"# max_lora_rank {server.planned_max_lora_rank} rounded up to "
                     f"{server.max_lora_rank} (values vLLM accepts); the prediction "
                     f"assumed {server.planned_max_lora_rank}")
    split = [a for a in server.adapters if a.share < 1 - 1e-9]
    if split:
        lines.append("# split adapters (route this share of their requests here): "
                     + ", ".join(f"{a.id} {a.share:.1%}" for a in split))
    lines += ["set -euo pipefail", "exec " + " ".join(shlex.quote(x) for x in head)
              + ' --port "${PORT:-8000}" --lora-modules \\']
    lines += [f"    {shlex.quote(m)}" + (" \\" if k < len(mods) - 1 else "")
              for k, m in enumerate(mods)]
    return "\n".join(lines) + "\n"


def render(fleet: Fleet, options: EmitOptions) -> dict[str, str]:
    """``gpu-00.sh``, ``gpu-01.sh``, ... (at least two digits)."""
    width = max(2, len(str(len(fleet.servers) - 1)))
    return {f"gpu-{s.index:0{width}d}.sh": script(s, fleet, options.lora_dir)
            for s in fleet.servers}
