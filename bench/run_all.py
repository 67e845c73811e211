"""Run every benchmark in sequence, each in its own process with a time limit, then print a
summary of the targets.

Each script prints its own markdown table and writes `bench/results/<name>.json`; this runner
adds `bench/results/run_all.json`. A script that runs past `--timeout` gets SIGTERM (its server,
if any, is stopped by the script), then SIGKILL for its whole process group. The exit status is 1
if any script failed or timed out; a missed target alone does not fail the run (the summary
marks it MISSED).

Run: `make bench`, or `.venv/bin/python -m bench.run_all [--only search_latency ...]
[--wait-idle 600]` (on a shared machine, wait for other jobs before each benchmark).
About 10-15 minutes on 2 cores (the first run also fills `var/bench-cache/`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    box_busy_share,
    markdown_table,
    verdict,
    write_results,
)

BENCHMARKS: tuple[str, ...] = (
    "encoder",
    "ingest_throughput",
    "search_latency",
    "http_search",
    "generation",
    "batching",
    "decoders",
    "soak",
    "ads_feed",
    "learning_feed",
)
HEADLINE = {
    "encoder": (
        "int8 ingest x first wave",
        "int8_ingest_speedup",
        "{:.2f}x",
        "target_speedup",
        ">=",
    ),
    "generation": (
        "cached summary p99 ms",
        "cached_p99_ms",
        "{:.2f}",
        "target_cached_p99_ms",
        "<=",
    ),
    "soak": ("feed p99 with generation / idle", "feed_p99_ratio", "{:.2f}x", "target_ratio", "<="),
    "ingest_throughput": ("ingest/raw", "ratio_ingest_over_raw", "{:.3f}x", "target_ratio", ">="),
    "search_latency": ("p99 ms @ largest", "p99_ms_at_largest", "{:.3f}", "target_p99_ms", "<="),
    "http_search": (
        "seq p99 ms @ largest",
        "sequential_p99_ms_at_largest",
        "{:.1f}",
        "target_p99_ms",
        "<=",
    ),
}


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's process group (it stops its own server), then SIGKILL it."""
    for sig, wait_s in ((signal.SIGTERM, 45.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_idle(max_wait_s: float, busy_below: float = 0.25) -> float:
    """Wait (at most `max_wait_s`) until under `busy_below` of the CPU is busy; returns the
    busy share last seen. On a shared box this keeps other jobs out of the figures."""
    deadline = time.perf_counter() + max_wait_s
    busy = box_busy_share()
    while busy >= busy_below and time.perf_counter() < deadline:
        print(f"(waiting for an idle CPU: {busy:.0%} busy)", flush=True)
        time.sleep(10)
        busy = box_busy_share()
    return busy


def run_one(name: str, timeout_s: float, wait_idle_s: float) -> dict[str, Any]:
    print(f"\n## bench.{name}\n", flush=True)
    busy = wait_for_idle(wait_idle_s) if wait_idle_s > 0 else None
    started = time.perf_counter()
    # A session of its own, so a timeout can stop the script and the server it started.
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"], cwd=REPO_ROOT, start_new_session=True
    )
    try:
        code = process.wait(timeout_s)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        _stop_group(process)
        status = f"timed out after {timeout_s:.0f}s"
    except KeyboardInterrupt:
        _stop_group(process)
        raise
    seconds = time.perf_counter() - started
    return {"benchmark": name, "status": status, "seconds": seconds, "busy_before": busy}


def _headline(name: str, since: float) -> tuple[str, str]:
    path = RESULTS_DIR / f"{name}.json"
    if name not in HEADLINE or not path.exists() or path.stat().st_mtime < since:
        return "-", "-"
    label, key, fmt, target_key, op = HEADLINE[name]
    data = json.loads(path.read_text())
    value = fmt.format(data[key])
    return f"{label}: {value} (target {op} {data[target_key]})", verdict(bool(data["target_met"]))


def main(names: Sequence[str], timeout_s: float, wait_idle_s: float = 0.0) -> int:
    since = time.time()
    runs = [run_one(name, timeout_s, wait_idle_s) for name in names]
    rows = []
    for run in runs:
        figure, target = _headline(run["benchmark"], since)
        run["figure"], run["target"] = figure, target
        rows.append([run["benchmark"], run["status"], f"{run['seconds']:.0f}", figure, target])
    print("\n## Summary\n")
    print(markdown_table(["benchmark", "status", "seconds", "figure", "target"], rows))
    write_results("run_all", {"runs": runs})
    return 0 if all(run["status"] == "ok" for run in runs) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument(
        "--timeout", type=float, default=540.0, help="Seconds allowed per benchmark."
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="Before each benchmark wait up to this many seconds for the CPU to be idle.",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(main(args.only, args.timeout, args.wait_idle))
