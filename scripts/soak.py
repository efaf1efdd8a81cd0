"""Summarise a soak run's samples (scripts/soak.sh writes them).

Growth is measured from the first minute after the first result (model
loading and the first allocations of every stage are warm-up, not a leak) to
the last minute of the run: the median RSS of each minute, in MB and %, and
the open file descriptors at both ends.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

WINDOW_S = 60
RSS_TARGET_PCT = 5.0


@dataclass(frozen=True)
class Sample:
    elapsed_s: int
    rss_kb: int
    fds: int
    threads: int
    results: int


@dataclass(frozen=True)
class Report:
    duration_s: int
    samples: int
    results_published: int
    warmup_s: int
    rss_first_minute_mb: float
    rss_last_minute_mb: float
    rss_growth_mb: float
    rss_growth_pct: float
    rss_max_mb: float
    fds_start: int
    fds_end: int
    fds_max: int
    threads_start: int
    threads_end: int
    exit_status: int
    machine: str
    passed: bool


def read_samples(path: Path) -> list[Sample]:
    with open(path, newline="") as f:
        return [Sample(**{k: int(v) for k, v in row.items()}) for row in csv.DictReader(f)]


def summarise(samples: list[Sample], results: int, exit_status: int) -> Report:
    if not samples:
        raise SystemExit("soak: no samples (the process ended at once?)")
    steady = [s for s in samples if s.results > 0] or samples
    t0, t_end = steady[0].elapsed_s, steady[-1].elapsed_s
    first = [s.rss_kb for s in steady if s.elapsed_s < t0 + WINDOW_S]
    last = [s.rss_kb for s in steady if s.elapsed_s > t_end - WINDOW_S]
    rss0, rss1 = statistics.median(first) / 1024, statistics.median(last) / 1024
    growth_pct = 100.0 * (rss1 - rss0) / rss0
    start, end = steady[0], steady[-1]
    return Report(
        duration_s=samples[-1].elapsed_s,
        samples=len(samples),
        results_published=results,
        warmup_s=t0,
        rss_first_minute_mb=round(rss0, 1),
        rss_last_minute_mb=round(rss1, 1),
        rss_growth_mb=round(rss1 - rss0, 1),
        rss_growth_pct=round(growth_pct, 2),
        rss_max_mb=round(max(s.rss_kb for s in samples) / 1024, 1),
        fds_start=start.fds,
        fds_end=end.fds,
        fds_max=max(s.fds for s in steady),
        threads_start=start.threads,
        threads_end=end.threads,
        exit_status=exit_status,
        machine=machine(),
        passed=growth_pct <= RSS_TARGET_PCT and end.fds <= start.fds and exit_status == 0,
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("samples", type=Path, help="samples.csv from scripts/soak.sh")
    p.add_argument("--results", type=Path, help="the subscriber's results, one per line")
    p.add_argument("--exit-status", type=int, default=0, help="edge-msa's exit status")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    samples = read_samples(args.samples)
    results = samples[-1].results if samples else 0
    if args.results and args.results.exists():
        results = sum(1 for line in args.results.read_text().splitlines() if line.strip())
    report = summarise(samples, results, args.exit_status)
    text = json.dumps(asdict(report), indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
