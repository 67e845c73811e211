"""`make demo`'s first run, timed: `newsroom demo --no-serve` on an empty data dir and an empty
model cache (the encoder's and the LM's conversions are part of a first run), per phase.

`--repo PATH` times another checkout with this virtualenv (e.g. a `git worktree` of an older
commit: the "before" of a change); the phases are read from the progress bars' labels.

Run: `.venv/bin/python -m bench.demo_first_run [--repo PATH] [--label NAME]`
Writes `bench/results/demo_first_run-<label>.json`. 5-10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, default_data_dir, markdown_table, setup_logging, write_results

# Output lines that open a phase (matched in order of appearance).
PHASES = {
    "bbc_news_summary": re.compile(r"bbc_news_summary: \d+ created"),
    "mind_demo_news": re.compile(r"mind_demo_news: \d+ created"),
    "mind_small_dev_impressions": re.compile(r"mind_small_dev_impressions: \d+ created"),
    "replay": re.compile(r"events recorded"),
    "models ready": re.compile(r"Newsroom is ready"),
}


def main(repo: Path, label: str, data: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="demo-first-run-") as tmp:
        env = {
            **os.environ,
            "NEWSROOM_DATA_DIR": str(Path(tmp) / "var"),
            "XDG_CACHE_HOME": str(Path(tmp) / "cache"),  # no converted encoder either
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "core.cli", "demo", "--no-serve", "--data", str(data)]
        started = time.perf_counter()
        marks: dict[str, float] = {}
        with subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                for phase, pattern in PHASES.items():
                    if phase not in marks and pattern.search(line):
                        marks[phase] = time.perf_counter() - started
            code = process.wait()
        total = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"demo exited with {code}")
    rows, previous = [], 0.0
    for phase, at in marks.items():
        rows.append([phase, at - previous])
        previous = at
    rows.append(["total", total])
    table = markdown_table(["phase", f"seconds ({label})"], rows)
    payload = {"repo": str(repo), "label": label, "phases": marks, "total_s": total}
    path = write_results(f"demo_first_run-{label}", payload | {"table": table})
    print(table)
    print(f"results: {path}")
    return payload


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO_ROOT)
    parser.add_argument("--label", default="this-checkout")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    args = parser.parse_args()
    main(args.repo.resolve(), args.label, args.data.resolve())
