"""`python -m bench.plot`: the figures of bench/README.md, from the runs in bench/results.

- throughput-and-latency.png: dev-server runs, throughput against worker processes and latency percentiles,
  grouped by their label (`--label`); unlabelled runs are the current code at full speed.
- cluster-scale.png: cluster runs (`--cluster`) by their number of cases, memory of each server process as
  cases come to wait, storage per case, and the reviewer's visibility query.
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


def on_cluster(run: dict) -> bool:
    return run.get("server", {}).get("kind") == "cluster"


def plot_memory_while_waiting(axes, runs: list[dict]) -> None:
    for index, run in enumerate(runs):
        marks = run["product"]["workers_memory_while_waiting"]
        waiting = [mark["waiting"] for mark in marks]
        for style, process in (("o-", "temporal_history"), ("s--", "postgres"), ("^:", "temporal_frontend")):
            axes.plot(
                waiting,
                [mark["server_rss_mib"][process] for mark in marks],
                style,
                color=f"C{index}",
                markersize=3,
                label=f"{process.removeprefix('temporal_')} ({name_of(run).replace(chr(10), ' ')})",
            )
    axes.set_xlabel("cases waiting for review")
    axes.set_ylabel("resident memory, MiB (PostgreSQL: PSS)")
    axes.set_title("Server memory as cases come to wait")
    axes.legend(fontsize=6)


def plot_storage(axes, runs: list[dict]) -> None:
    databases = ("temporal", "temporal_visibility", "enrollment")
    positions = range(len(runs))
    for offset, moment in enumerate(("waiting", "completed")):
        bottoms = [0.0] * len(runs)
        for index, database in enumerate(databases):
            heights = [run["product"]["storage"][f"bytes_per_case_{moment}"][database] / 1000 for run in runs]
            axes.bar(
                [p + offset * 0.4 for p in positions],
                heights,
                width=0.38,
                bottom=bottoms,
                color=f"C{index}",
                alpha=0.5 if moment == "waiting" else 1.0,
                label=f"{database} ({moment})",
            )
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axes.set_xticks([p + 0.2 for p in positions], [name_of(run) for run in runs], fontsize=7)
    axes.set_ylabel("kB per case")
    axes.set_title("Storage per case: waiting (light), completed")
    axes.margins(y=0.4)  # room above the bars for the legend
    axes.legend(fontsize=6, ncols=2, loc="upper left")


def plot_visibility(axes, runs: list[dict]) -> None:
    cases = [run["settings"]["cases"] for run in runs]
    queries = [run["product"]["while_all_wait"]["visibility"]["queries"] for run in runs]
    for index, (call, label) in enumerate((("list_first_page_ms", "list, first page"), ("count_ms", "count"))):
        for quantile, style in (("p50", "o-"), ("p99", "s--")):
            axes.plot(
                cases,
                [q["reviewer_awaiting_review_in_district"][call][quantile] for q in queries],
                style,
                color=f"C{index}",
                label=f"{label} {quantile}",
            )
    axes.set_xscale("log")
    axes.set_xlabel("cases waiting (log scale)")
    axes.set_ylabel("ms")
    axes.set_title("Reviewer's query (CaseStatus, DistrictCode)")
    axes.legend(fontsize=7)


def save(figure, target: Path) -> None:
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"written {target}")


def main(folder: str = "bench/results") -> None:
    runs = load(Path(folder))
    dev = [run for run in runs if not on_cluster(run)]
    if not dev:
        raise SystemExit(f"no runs in {folder}: run python -m bench.run first")
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(14, 5))
    plot_throughput(throughput, dev)
    plot_latency(latency, dev)
    save(figure, Path(folder) / "throughput-and-latency.png")
    cluster = sorted((run for run in runs if on_cluster(run)), key=lambda run: run["settings"]["cases"])
    if cluster:
        figure, (memory, storage, visibility) = plt.subplots(1, 3, figsize=(18, 5))
        plot_memory_while_waiting(memory, cluster)
        plot_storage(storage, cluster)
        plot_visibility(visibility, cluster)
        save(figure, Path(folder) / "cluster-scale.png")


if __name__ == "__main__":
    main(*sys.argv[1:])
