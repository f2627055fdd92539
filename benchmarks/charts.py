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
    """Throughput against shard count, one line per acceptor count and pipeline
    depth, redis-server as a dotted line per pipeline depth."""
    shardkv = [p for p in points if p.get("shards")]
    if not shardkv:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    lines: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for point in shardkv:
        lines.setdefault((point.get("pipeline", 16), point.get("acceptors") or 1), []).append(point)
    for (pipeline, acceptors), line in sorted(lines.items()):
        line.sort(key=lambda p: p["shards"])
        ax.plot(
            [p["shards"] for p in line],
            [p["throughput"] / 1000 for p in line],
            marker="o",
            linestyle="-" if pipeline > 1 else "--",
            label=f"shardkv, {acceptors} acceptor(s), -P {pipeline}",
        )
    for point in points:
        if not point.get("shards"):
            ax.axhline(
                point["throughput"] / 1000,
                color="red",
                linestyle=":" if point.get("pipeline", 16) > 1 else "-.",
                label=f"redis-server, -P {point.get('pipeline', 16)}",
            )
    shards = sorted({p["shards"] for p in shardkv})
    ax.set_xscale("log", base=2)
    ax.set_xticks(shards, [str(s) for s in shards])
    ax.set_xlabel("shards (worker processes)")
    ax.set_ylabel("thousand ops/s (loadtest)")
    ax.set_title("shardkv scaling")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
