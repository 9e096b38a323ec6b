"""`python -m bench.plot`: throughput against worker processes, and latency percentiles, from bench/results.

Runs are grouped by their label (`--label`); unlabelled runs are the current code at full speed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def load(folder: Path) -> list[dict]:
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("run-*.json")]
    return sorted(
        runs, key=lambda run: (run["settings"].get("label", ""), run["settings"]["cases"], run["settings"]["workers"])
    )


def name_of(run: dict) -> str:
    settings = run["settings"]
    cases = settings["cases"]
    size = f"{cases // 1000}k" if cases % 1000 == 0 else str(cases)
    return f"{settings.get('label') or 'current'}\n{size} × {settings['workers']}w"


def plot_throughput(axes, runs: list[dict]) -> None:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        settings = run["settings"]
        if not (settings.get("rate") or settings.get("verifier_rate_limit") or settings.get("hold_reviews")):
            by_label[settings.get("label") or "current"].append(run)
    for index, (label, series) in enumerate(sorted(by_label.items())):
        series.sort(key=lambda run: run["settings"]["workers"])
        workers = [run["settings"]["workers"] for run in series]
        axes.plot(
            workers,
            [run["product"]["sustained_per_second"] for run in series],
            "o-",
            color=f"C{index}",
            label=f"cases ({label})",
        )
        axes.plot(
            workers,
            [run["ceiling"]["sustained_per_second"] for run in series],
            "s--",
            color=f"C{index}",
            alpha=0.5,
            label=f"engine ceiling ({label} run)",
        )
    axes.set_xlabel("worker processes")
    axes.set_ylabel("completed per second (sustained)")
    axes.set_xticks(sorted({run["settings"]["workers"] for run in runs}))
    axes.set_ylim(bottom=0)
    axes.set_title("Throughput, submitted as fast as accepted")
    axes.legend(fontsize=7)


def plot_latency(axes, runs: list[dict]) -> None:
    positions = range(len(runs))
    for offset, (key, name) in enumerate(
        (
            ("submission_to_awaiting_review_ms", "submission → awaiting review"),
            ("review_to_platform_result_ms", "review → platform result"),
        )
    ):
        # Largest first, so each smaller percentile is drawn over it.
        for q, alpha in (("p99", 0.3), ("p95", 0.6), ("p50", 1.0)):
            axes.bar(
                [p + offset * 0.4 for p in positions],
                [run["product"][key][q] / 1000 for run in runs],
                width=0.38,
                alpha=alpha,
                color=f"C{offset}",
                label=f"{name} {q}",
            )
    floor = min(run["floor"]["verification_latency_ms"]["p50"] for run in runs) / 1000
    axes.axhline(floor, color="black", linestyle=":", label=f"direct floor p50 ({floor * 1000:.0f} ms)")
    axes.set_yscale("log")
    axes.set_xticks([p + 0.2 for p in positions], [name_of(run) for run in runs], fontsize=7, rotation=30)
    axes.set_ylabel("seconds (log scale)")
    axes.set_title("Latency percentiles (p50 solid, p95, p99 lighter)")
    axes.legend(fontsize=7)


def main(folder: str = "bench/results") -> None:
    runs = load(Path(folder))
    if not runs:
        raise SystemExit(f"no runs in {folder}: run python -m bench.run first")
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(14, 5))
    plot_throughput(throughput, runs)
    plot_latency(latency, runs)
    figure.tight_layout()
    target = Path(folder) / "throughput-and-latency.png"
    figure.savefig(target, dpi=110)
    print(f"written {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
