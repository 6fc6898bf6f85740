"""Draws the ingest load plot from a run's sweep.csv (bench/run calls it).

    python bench/plot.py target/bench/sweep.csv docs/benchmarks/ingest-load.png

Two panels against offered load (webhooks/s): the throughput achieved, and
the p99 latency on a log scale, one line per target (durable, noop, and the
bridge when it ran).
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(sweep_csv: str, png: str) -> None:
    series = defaultdict(list)
    with open(sweep_csv, newline="") as f:
        for row in csv.DictReader(f):
            series[row["target"]].append(
                (float(row["offered_per_s"]), float(row["achieved_per_s"]), float(row["p99_ms"]))
            )
    if not series:
        sys.exit(f"{sweep_csv} has no rows")
    fig, (tput, p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target, points in sorted(series.items()):
        points.sort()
        offered = [p[0] for p in points]
        tput.plot(offered, [p[1] for p in points], marker="o", label=target)
        p99.plot(offered, [p[2] for p in points], marker="o", label=target)
    top = max(p[0] for pts in series.values() for p in pts)
    tput.plot([0, top], [0, top], linestyle=":", color="grey", label="offered = achieved")
    tput.set(xlabel="offered load (webhooks/s)", ylabel="achieved (201/s)", title="Throughput")
    p99.set(xlabel="offered load (webhooks/s)", ylabel="p99 latency (ms, log)", title="p99 latency")
    p99.set_yscale("log")
    p99.axhline(25, linestyle="--", color="red", linewidth=0.8, label="25 ms target")
    for ax in (tput, p99):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"plot: {png}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
