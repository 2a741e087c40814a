"""What ``loratwin profile prior`` prints: the estimated profile at a glance."""

from __future__ import annotations

from rich.table import Table

from loratwin.calibrate.prior_label import ESTIMATED
from loratwin.profile.model import GIB, Profile, kv_capacity, max_loras_that_fit
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost

#: Decode batches whose estimated step time the summary shows.
SUMMARY_BATCHES = (1, 64, 256)
#: Adapter rank (and slot rank) whose estimated load times the summary shows.
LOAD_SUMMARY_RANK = 16


def decode_step_ms(profile: Profile, batch: int, context: int = 512) -> float:
    """Estimated time of one decode step of ``batch`` requests at ``context`` tokens, ms."""
    server = ServerConfig(enable_lora=False, max_num_seqs=max(batch, 1),
                          max_num_batched_tokens=max(2048, batch))
    cost = StepCost(profile, server)
    return 1e3 * (cost.exec_s(batch, batch, 0, batch * context, 1)
                  + cost.sched_s(batch, 0))


def prior_summary_table(profile: Profile) -> Table:
    """A table of the estimated profile: memory, slots that fit, step times, factors."""
    rep = profile.fit_report.get("prior", {})
    eff = profile.fit_report.get("prior_efficiency", {})
    table = Table(title=f"{ESTIMATED} profile {profile.name} (physics prior, not measured)")
    table.add_column("quantity")
    table.add_column(f"value ({ESTIMATED})", justify="right")
    table.add_row("model / GPU / tp", f"{rep.get('model')} / {rep.get('gpu')} / {rep.get('tp')}")
    table.add_row("weights per GPU", f"{float(rep.get('weights_gib', 0.0)):.2f} GiB")
    table.add_row("KV cache per token", f"{profile.arch.kv_bytes_per_token / 1024:.0f} KiB")
    table.add_row("sampling penalties (generation config)",
                  "yes" if rep.get("sampling_penalties") == "true" else "no")
    nolora = kv_capacity(profile, 1, 8, enable_lora=False, max_num_seqs=256)
    table.add_row("KV cache, no LoRA, max_num_seqs 256",
                  f"{nolora.tokens:,} tokens" if nolora.failure is None else nolora.failure)
    table.add_row("max_model_len", f"{profile.max_model_len:,}")
    for r in sorted(profile.kv.rank_lines):
        n = max_loras_that_fit(profile, r)
        table.add_row(f"max_loras that start, max_lora_rank {r}", f"{n:,}")
    for b in SUMMARY_BATCHES:
        table.add_row(f"decode step, batch {b}, 512-token context",
                      f"{decode_step_ms(profile, b):.2f} ms")
    layers = profile.arch.num_layers
    per_step, per_layer = float(eff.get("step_s", 0)), float(eff.get("layer_s", 0))
    table.add_row("fixed step cost (per step + per layer)",
                  f"{1e3 * per_step:.2f} ms + {layers} x {1e6 * per_layer:.1f} us "
                  f"= {1e3 * (per_step + layers * per_layer):.2f} ms")
    table.add_row("HBM efficiency (streaming / KV)",
                  f"{eff.get('weights', 0):.3f} / {eff.get('kv', 0):.3f}")
    table.add_row("tensor-core efficiency (linear / attention)",
                  f"{eff.get('flops', 0):.3f} / {eff.get('attention', 0):.4f}")
    if "adapter_targets" in rep:
        table.add_row("adapter targets (load times)", str(rep["adapter_targets"]))
    for p in profile.loads.points:
        if p.max_lora_rank == p.adapter_rank == LOAD_SUMMARY_RANK:
            table.add_row(f"adapter load, rank {p.adapter_rank} (CPU->GPU / disk->CPU)",
                          f"{p.cpu_ms:.2f} / {p.disk_ms:.1f} ms")
    table.add_row("calibrated on", str(rep.get("calibrated_on", "")))
    table.add_row("total GPU memory", f"{profile.gpu_total_memory_gib:.2f} GiB "
                  f"({profile.gpu_total_memory_gib * GIB / 1e9:.1f} GB)")
    return table


__all__ = ["LOAD_SUMMARY_RANK", "SUMMARY_BATCHES", "decode_step_ms", "prior_summary_table"]
