"""Talking to a real vLLM server: start and stop it, benchmark it, scrape its ``/metrics``.

* :mod:`.launcher` starts a ``vllm serve`` command, waits for ``/health`` and stops it cleanly;
* :mod:`.client` is the asynchronous streaming benchmark client (the request discipline of
  vLLM's ``benchmark_serving``: one streamed ``/v1/completions`` request per arrival,
  ``model`` = the adapter's name, ``max_tokens`` = the output length with ``ignore_eos``);
* :mod:`.metrics` parses vLLM's Prometheus text (names of 0.8.5 and of 0.32) and samples it;
* :mod:`.bench` runs one benchmark and writes its records and its row of the real-runs schema.

Nothing here simulates; the twin reads what these modules measure.
"""
