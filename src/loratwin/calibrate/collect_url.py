"""The one server of a ``--url`` campaign, described from what it reports.

The adapters are the server's own (``/v1/models`` entries with a parent), their ranks read
from each adapter folder's ``adapter_config.json`` (``root`` of the entry, which must be
readable from where loratwin runs); ``max_loras`` comes from ``vllm:lora_requests_info``,
``max_cpu_loras`` and ``max_lora_rank`` from options (vLLM's defaults otherwise, see
:mod:`loratwin.live.flags`). The model's ``config.json`` is the base model's ``root`` or
``--hf-config``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from loratwin.calibrate.collect_model import adapter_rank
from loratwin.calibrate.collect_plan import ServerSpec
from loratwin.errors import ConfigError
from loratwin.live.closed import scrape, sequential_ttft
from loratwin.live.errors import ServerError
from loratwin.live.flags import resolve_flags


async def _entries(url: str) -> list[dict]:
    from loratwin.live.client import check_server

    await check_server(url, [])
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        data = (await client.get(f"{url}/v1/models")).json().get("data", [])
    return [e for e in data if isinstance(e, dict)]


def url_server_spec(url: str, flags: dict[str, int | None], hf_config: Path | None,
                    seed: int = 0) -> tuple[ServerSpec, Path]:
    """The :class:`ServerSpec` of the running server and its model's ``config.json``.

    Raises
    ------
    ServerError
        The server is down, serves no adapter, or its answers are unusable.
    ConfigError, DataError
        Unreadable adapter or model config, contradicting flags.
    """
    entries = asyncio.run(_entries(url))
    adapters = [e for e in entries if e.get("parent")]
    base = next((e for e in entries if not e.get("parent")), None)
    if not adapters:
        raise ServerError(url, "serves no LoRA adapter (start it with --enable-lora "
                               "--lora-modules name=path ...)")
    ranks = {str(e["id"]): adapter_rank(Path(str(e.get("root")))) for e in adapters}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    names = sorted(n for n, r in ranks.items() if r == rank)
    asyncio.run(sequential_ttft(url, [names[0]], 4, seed=seed))  # lora_requests_info appears
    _, facts = asyncio.run(scrape(url))
    resolved = resolve_flags(facts=facts, options=flags)
    v = resolved.values
    config = hf_config or (Path(str(base.get("root"))) / "config.json" if base else None)
    if config is None or not config.is_file():
        raise ConfigError(f"no readable config.json of the base model ({config}); pass "
                          "--hf-config PATH", field="hf_config")
    return ServerSpec("server", True, v["max_loras"], v["max_cpu_loras"], v["max_lora_rank"],
                      (rank,) * len(names), existing=True, names=tuple(names)), config
