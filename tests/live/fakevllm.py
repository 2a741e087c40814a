"""A fake vLLM OpenAI server on a loopback port (stdlib asyncio, HTTP/1.1, SSE streaming).

It answers ``/health``, ``/version``, ``/v1/models``, ``/metrics`` (vLLM 0.32 or 0.8.5
metric names) and streams ``/v1/completions``: after ``ttft_s`` one chunk per token every
``token_s`` seconds, then a usage chunk and ``[DONE]``. Unknown models get vLLM's 404
error body. It counts open streams (``vllm:num_requests_running``) and the requests it saw,
so tests can check what the client sent and that cancelled streams were closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class FakeVllm:
    """Configuration and observations of the fake server."""

    models: tuple[str, ...] = ("a0", "a1")
    base_model: str = "tiny"
    max_loras: int = 2
    ttft_s: float = 0.02
    token_s: float = 0.005
    metric_names: str = "0.32"
    fail_model: str | None = None  # a served name whose requests answer HTTP 500
    roots: dict[str, str] = field(default_factory=dict)  # model name -> folder (/v1/models)
    port: int = 0
    seen: list[dict] = field(default_factory=list)
    closed_early: int = 0
    running: int = 0
    peak_running: int = 0
    steps: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeVllm:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        loop, server = self._loop, self._server

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, v in
                           (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self._route(method, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    def _send(writer: asyncio.StreamWriter, status: int, body: bytes,
              ctype: str = "application/json") -> None:
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\n"
                     f"content-length: {len(body)}\r\n\r\n".encode() + body)

    async def _route(self, method: str, path: str, body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        if path == "/health":
            self._send(writer, 200, b"")
        elif path == "/version":
            self._send(writer, 200, json.dumps({"version": self.metric_names}).encode())
        elif path == "/v1/models":
            data = [{"id": self.base_model, "parent": None, "max_model_len": 2048,
                     "root": self.roots.get(self.base_model, self.base_model)}]
            data += [{"id": m, "parent": self.base_model, "root": self.roots.get(m, m)}
                     for m in self.models]
            self._send(writer, 200, json.dumps({"object": "list", "data": data}).encode())
        elif path == "/metrics":
            self._send(writer, 200, self.metrics_text().encode(), "text/plain")
        elif path == "/v1/completions" and method == "POST":
            await self._complete(json.loads(body), writer)
        else:
            self._send(writer, 404, b'{"detail":"Not Found"}')
        await writer.drain()

    async def _complete(self, req: dict, writer: asyncio.StreamWriter) -> None:
        self.seen.append(req)
        model = req.get("model")
        if model not in (*self.models, self.base_model):
            msg = {"error": {"message": f"The model `{model}` does not exist.",
                             "type": "NotFoundError", "code": 404}}
            self._send(writer, 404, json.dumps(msg).encode())
            return
        if model == self.fail_model:
            self._send(writer, 500, b'{"error": {"message": "engine dead"}}')
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        finished = False
        try:
            await asyncio.sleep(self.ttft_s)
            n = int(req["max_tokens"])
            for i in range(n):
                if i:
                    await asyncio.sleep(self.token_s)
                self.steps += 1
                choice = {"index": 0, "text": "x",
                          "finish_reason": "length" if i == n - 1 else None}
                await self._chunk(writer, {"choices": [choice]})
            usage = {"prompt_tokens": len(req["prompt"]), "completion_tokens": n}
            await self._chunk(writer, {"choices": [], "usage": usage})
            writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
            await writer.drain()
            finished = True
        finally:
            self.running -= 1
            if not finished:
                self.closed_early += 1

    @staticmethod
    async def _chunk(writer: asyncio.StreamWriter, obj: dict) -> None:
        data = f"data: {json.dumps(obj)}\n\n".encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    def metrics_text(self) -> str:
        kv = "vllm:kv_cache_usage_perc" if self.metric_names == "0.32" else \
            "vllm:gpu_cache_usage_perc"
        lab = f'engine="0",model_name="{self.base_model}"'
        extra = ',kv_cache_size_tokens="4096"' if self.metric_names == "0.32" else ""
        return "\n".join([
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lab}}} {self.running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lab}}} 0.0",
            f"# TYPE {kv} gauge",
            f"{kv}{{{lab}}} 0.25",
            "# TYPE vllm:num_preemptions counter",
            f"vllm:num_preemptions_total{{{lab}}} 0.0",
            "# TYPE vllm:iteration_tokens_total histogram",
            f"vllm:iteration_tokens_total_count{{{lab}}} {self.steps}.0",
            f"vllm:iteration_tokens_total_sum{{{lab}}} {self.steps}.0",
            "# TYPE vllm:cache_config_info gauge",
            f'vllm:cache_config_info{{block_size="16",enable_prefix_caching="False",'
            f'engine="0",gpu_memory_utilization="0.9",num_gpu_blocks="256"{extra}}} 1.0',
            "# TYPE vllm:lora_requests_info gauge",
            f'vllm:lora_requests_info{{max_lora="{self.max_loras}",running_lora_adapters="a0",'
            f'waiting_lora_adapters=""}} {time.time():.3f}',
            "",
        ])


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.live.fakevllm serve MODEL --port N [vllm serve flags]``: serve until
    killed. Understands ``--enable-lora``, ``--max-loras``, ``--lora-modules name=path``,
    ``--delay S`` (before listening) and ``--fail-above-loras N`` (exit with vLLM's KV
    start-up error when ``--max-loras`` is larger); other flags are ignored."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("words", nargs="*")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--enable-lora", action="store_true")
    p.add_argument("--max-loras", type=int, default=1)
    p.add_argument("--lora-modules", nargs="*", default=[])
    p.add_argument("--fail-above-loras", type=int, default=None)
    args, _ = p.parse_known_args(argv)
    time.sleep(args.delay)
    if args.fail_above_loras is not None and args.enable_lora \
            and args.max_loras > args.fail_above_loras:
        print("ValueError: To serve at least one request with the model's max seq len (2048), "
              "(1.00 GiB KV cache is needed, which is larger than the available KV cache "
              "memory (0.50 GiB).", flush=True)
        raise SystemExit(1)
    model = args.words[1] if len(args.words) > 1 else "tiny"
    modules = dict(m.split("=", 1) for m in args.lora_modules) if args.enable_lora else {}
    server = FakeVllm(models=tuple(modules), base_model=model, max_loras=args.max_loras,
                      roots={model: model, **modules})
    print("INFO [kv_cache_utils.py] CPU KV cache size: 4,096 tokens", flush=True)

    async def serve() -> None:
        srv = await asyncio.start_server(server._handle, "127.0.0.1", args.port)
        async with srv:
            await srv.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
