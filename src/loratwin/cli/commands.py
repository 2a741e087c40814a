"""Imports every command module so that their ``@app.command`` decorators run."""

from loratwin.cli import (  # noqa: F401
    advise_cmd,
    bench_cmd,
    place_cmd,
    profile_cmd,
    simulate_cmd,
    surrogate_cmd,
    validate_cmd,
    workload_cmd,
)
