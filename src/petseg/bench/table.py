"""The headline figures of a ``petseg-bench`` result as a plain-text table."""

from __future__ import annotations


def format_table(result: dict) -> str:
    """The headline figures as a plain-text table."""
    lines = [
        f"petseg-bench {result['date']}  device: {result['device']}  "
        f"torch {result['versions']['torch']}  {result['image_size']}x{result['image_size']}, "
        f"batch {result['batch_size']}, {result['precision']}",
        f"matmul {result['matmul']['n']}^3 {result['matmul']['dtype']}: "
        f"{result['matmul']['flops'] / 1e9:,.1f} GFLOP/s",
        "",
        f"{'training step':<20}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}{'of matmul':>11}"
        f"{'vs peer':>9}{'peak MiB':>10}",
    ]
    for name, s in result["train"].items():
        peak = "-" if s["peak_memory_bytes"] is None else f"{s['peak_memory_bytes'] / 2**20:,.0f}"
        ratio = f"{s['ratio_to_peer']:.2f}x" if "ratio_to_peer" in s else "-"
        lines.append(
            f"{name:<20}{s['images_per_s']:>10.2f}{s['flops_per_step'] / 1e9:>12.1f}"
            f"{s['flops_per_s'] / 1e9:>10.1f}{s['fraction_of_matmul']:>10.0%}{ratio:>9}{peak:>10}"
        )
    lines.append("")
    for name, s in result["inference"].items():
        lines.append(f"inference {name:<20}{s['images_per_s']:>10.2f} images/s")
    if "data" in result:
        d = result["data"]
        lines += [
            "",
            f"data: standard loader ({d['standard_workers']} workers) "
            f"{d['standard_images_per_s']:.1f} images/s = {d['standard_over_consumption']:.2f}x "
            "the model's consumption",
            f"data: cached path {d['cached_images_per_s']:.1f} images/s = "
            f"{d['cached_over_consumption']:.2f}x the model's consumption",
        ]
    if "time_to_dice" in result:
        t = result["time_to_dice"]
        lines.append(
            f"time to val Dice: {t['seconds_to_val_dice']}, test Dice {t['test_dice']:.4f}"
        )
    else:
        lines.append("time to val Dice: not measured (needs a GPU and --root)")
    return "\n".join(lines)
