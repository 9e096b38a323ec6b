"""`python -m bench.plot`: throughput against worker processes, and latency percentiles, from bench/results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(folder: str = "bench/results") -> None:
    runs = sorted(
        (json.loads(path.read_text(encoding="utf-8")) for path in Path(folder).glob("run-*.json")),
        key=lambda run: (run["settings"]["cases"], run["settings"]["workers"]),
    )
    if not runs:
        raise SystemExit(f"no runs in {folder}: run python -m bench.run first")
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))

    workers = [run["settings"]["workers"] for run in runs]
    throughput.plot(workers, [run["product"]["sustained_per_second"] for run in runs], "o-", label="enrollment cases")
    throughput.plot(workers, [run["ceiling"]["sustained_per_second"] for run in runs], "s--", label="engine ceiling (trivial workflow)")
    throughput.set_xlabel("worker processes")
    throughput.set_ylabel("completed per second (sustained)")
    throughput.set_xticks(sorted(set(workers)))
    throughput.set_ylim(bottom=0)
    throughput.set_title("Throughput")
    throughput.legend()

    labels = [f"{run['settings']['cases']} cases, {run['settings']['workers']}w" for run in runs]
    positions = range(len(runs))
    for offset, (key, name) in enumerate(
        (("submission_to_awaiting_review_ms", "submission → awaiting review"), ("review_to_platform_result_ms", "review → platform result"))
    ):
        # Largest first, so each smaller percentile is drawn over it.
        for q, alpha in (("p99", 0.3), ("p95", 0.6), ("p50", 1.0)):
            latency.bar(
                [p + offset * 0.4 for p in positions],
                [run["product"][key][q] / 1000 for run in runs],
                width=0.38,
                alpha=alpha,
                color=f"C{offset}",
                label=f"{name} {q}",
            )
    latency.set_xticks([p + 0.2 for p in positions], labels)
    latency.set_ylabel("seconds")
    latency.set_title("Latency percentiles (p50 solid, p95, p99 lighter)")
    latency.legend(fontsize=7)
    figure.tight_layout()
    target = Path(folder) / "throughput-and-latency.png"
    figure.savefig(target, dpi=110)
    print(f"written {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
