"""PNG charts of benchmark results, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def throughput_chart(records: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: requests/s per test, one bar per server, one panel per pipeline depth."""
    pipelines = sorted({r["pipeline"] for r in records})
    names = list(dict.fromkeys(r["name"] for r in records))
    servers = list(dict.fromkeys(r["server"] for r in records))
    if not records:
        return
    fig, axes = plt.subplots(
        len(pipelines), 1, figsize=(max(8, 1.6 * len(names) * len(servers) / 3), 4.5 * len(pipelines))
    )
    axes = axes if len(pipelines) > 1 else [axes]
    width = 0.8 / max(1, len(servers))
    for ax, pipeline in zip(axes, pipelines, strict=True):
        for i, server in enumerate(servers):
            rps = {
                r["name"]: r["rps"] for r in records if r["server"] == server and r["pipeline"] == pipeline
            }
            xs = [n + (i - (len(servers) - 1) / 2) * width for n in range(len(names))]
            ax.bar(xs, [rps.get(name, 0) / 1000 for name in names], width, label=server)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("thousand requests/s")
        ax.set_title(f"redis-benchmark, pipeline -P {pipeline}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scaling_chart(points: list[dict[str, Any]], path: Path) -> None:
    """Throughput against shard count, with ideal linear scaling from the first point."""
    if not points:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shards = [p["shards"] for p in points]
    rps = [p["throughput"] / 1000 for p in points]
    ax.plot(shards, rps, marker="o", label="shardkv")
    ax.plot(
        shards,
        [rps[0] * s / shards[0] for s in shards],
        linestyle="--",
        color="grey",
        label="linear from first point",
    )
    for point in points:
        if point.get("redis_throughput"):
            ax.axhline(point["redis_throughput"] / 1000, color="red", linestyle=":", label="redis-server")
            break
    ax.set_xscale("log", base=2)
    ax.set_xticks(shards, [str(s) for s in shards])
    ax.set_xlabel("shards (worker processes)")
    ax.set_ylabel("thousand ops/s (loadtest)")
    ax.set_title("shardkv scaling")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
