"""Helpers for the feed benchmarks: a catalogue of perturbed AG News articles with publication
times, synthetic readers with topical click histories, waiting for the ranking head, process CPU
time from /proc, and short summaries of cProfile and py-spy output.

Importing this module is cheap: it loads no model and touches no database.
"""

from __future__ import annotations

import cProfile
import logging
import os
import pstats
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, child_pids
from bench.http_search import populate
from core.domain import ArticleDraft, EventDraft

log = logging.getLogger(__name__)

WRITE_BATCH = 5000
DAY_S = 86_400.0


# --- articles -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Catalogue:
    """What the event generator needs to know about the stored articles, by row index."""

    ids: list[str]
    categories: np.ndarray  # (n,) str
    published: np.ndarray  # (n,) float64 seconds since the epoch

    def __len__(self) -> int:
        return len(self.ids)


def populate_articles(
    data_dir: Path,
    drafts: Sequence[ArticleDraft],
    vectors: np.ndarray,
    model: str,
    now: float,
    days: float,
    seed: int,
) -> tuple[Catalogue, float]:
    """Store len(vectors) articles through `Storage.write_articles` (nothing is re-encoded);
    returns the catalogue and the seconds taken. Article i carries AG News article
    i % len(drafts) (copies get a numbered title), its lower-cased AG News category and a
    publication time uniform over the last `days` days."""
    rng = np.random.default_rng(seed)
    published = now - rng.uniform(0.0, days * DAY_S, size=len(vectors))
    ids = [f"feed-{i}" for i in range(len(vectors))]
    categories = np.array(
        [(drafts[i % len(drafts)].category or "").lower() for i in range(len(vectors))]
    )
    seconds = populate(data_dir, drafts, vectors, model, id_prefix="feed", published=published)
    return Catalogue(ids, categories, published), seconds


# --- readers ------------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class ReaderMix:
    """How synthetic readers behave. Clicks fall on 1-3 favourite categories, skewed towards
    each category's "popular" head (index = n * u**skew over a fixed shuffle); every click is
    preceded by an impression of the same article, and some articles are only shown."""

    clicks: tuple[int, int] = (10, 30)
    favourites: tuple[int, int] = (1, 3)
    off_topic_share: float = 0.1
    shown_only: tuple[int, int] = (5, 20)
    dismissals: tuple[int, int] = (0, 3)
    skew: float = 3.0


def user_id(n: int) -> str:
    return f"u{n:05d}"


def reader_events(
    catalogue: Catalogue, users: int, now: float, seed: int, mix: ReaderMix | None = None
) -> list[EventDraft]:
    """Events of `users` readers, sorted by time (a realistic interleaved stream). Each event
    happens between its article's publication and `now`; ids are deterministic."""
    mix = mix or ReaderMix()
    rng = np.random.default_rng(seed)
    names = sorted(set(catalogue.categories.tolist()))
    by_category = {c: rng.permutation(np.flatnonzero(catalogue.categories == c)) for c in names}
    n = len(catalogue)

    def pick(category: str | None, count: int) -> np.ndarray:
        if category is None:
            return rng.integers(0, n, size=count)
        pool = by_category[category]
        return pool[(len(pool) * rng.random(count) ** mix.skew).astype(np.int64)]

    def when(rows: np.ndarray) -> np.ndarray:
        start = catalogue.published[rows]
        return start + rng.random(len(rows)) * (now - start)

    rows: list[tuple[float, str, int, str]] = []  # (ts, user, article row, type)
    for u in range(users):
        user = user_id(u)
        favourites = list(
            rng.choice(
                names,
                size=min(len(names), int(rng.integers(*mix.favourites, endpoint=True))),
                replace=False,
            )
        )
        clicks = int(rng.integers(*mix.clicks, endpoint=True))
        chosen = []
        for _ in range(clicks):
            off_topic = rng.random() < mix.off_topic_share
            category = None if off_topic else str(favourites[int(rng.integers(len(favourites)))])
            chosen.append(int(pick(category, 1)[0]))
        clicked = np.array(chosen, dtype=np.int64)
        click_ts = when(clicked)
        for row, ts in zip(clicked.tolist(), click_ts.tolist(), strict=True):
            rows.append((ts - 5.0, user, row, "impression"))
            rows.append((ts, user, row, "click"))
        shown = pick(None, int(rng.integers(*mix.shown_only, endpoint=True)))
        rows += [(ts, user, row, "impression") for row, ts in zip(shown, when(shown), strict=True)]
        others = [c for c in names if c not in favourites] or names
        for _ in range(int(rng.integers(*mix.dismissals, endpoint=True))):
            row = pick(str(others[int(rng.integers(len(others)))]), 1)
            rows.append((float(when(row)[0]), user, int(row[0]), "dismiss"))
    rows.sort(key=lambda r: r[0])
    return [
        EventDraft(
            user_id=user,
            article_id=catalogue.ids[row],
            type=kind,
            event_id=f"ev-{n}",
            ts=datetime.fromtimestamp(ts, UTC),
        )
        for n, (ts, user, row, kind) in enumerate(rows)
    ]


def event_mix(events: Sequence[EventDraft]) -> dict[str, int]:
    return dict(Counter(e.type for e in events))


# --- ranking head -------------------------------------------------------------------------------
def default_ranker_dir() -> Path:
    return REPO_ROOT / "models" / "ranker"


def wait_for_ranker(model_dir: Path, timeout_s: float, settle_s: float = 10.0) -> float:
    """Wait until `config.json` and `model.safetensors` exist and neither changed for
    `settle_s` (the trainer writes the config first); returns the seconds waited."""
    started = time.monotonic()
    files = (model_dir / "config.json", model_dir / "model.safetensors")
    warned = False
    while True:
        try:
            newest = max(f.stat().st_mtime for f in files)
            if time.time() - newest >= settle_s:
                return time.monotonic() - started
        except FileNotFoundError:
            pass
        waited = time.monotonic() - started
        if waited >= timeout_s:
            raise TimeoutError(
                f"no settled ranking head at {model_dir} after {timeout_s:.0f}s: train one "
                "with `newsroom train-ranker` or pass --ranker-wait with a longer timeout"
            )
        if not warned:
            log.info("waiting up to %.0fs for the ranking head at %s", timeout_s, model_dir)
            warned = True
        time.sleep(min(10.0, max(timeout_s - waited, 0.1)))


# --- processes ----------------------------------------------------------------------------------
def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of `pid` (all its threads) and of its live child
    processes (feed replicas), from /proc/PID/stat."""
    total = 0.0
    for member in [pid, *child_pids(pid)]:
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as stat:
                # The command name may hold spaces: fields count after its closing parenthesis.
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a child that just exited
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- profiles -----------------------------------------------------------------------------------
_SITE = re.compile(r"^.*/site-packages/")


def _where(path: str) -> str:
    path = _SITE.sub("", path)
    prefix = str(REPO_ROOT) + "/"
    return path.removeprefix(prefix)


def profile_top(profile: cProfile.Profile, n: int, calls: int) -> dict[str, list[dict[str, Any]]]:
    """Top `n` functions by cumulative and by own time, per call of the profiled loop (ms)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [
        {
            "function": f"{_where(file)}:{line}({name})" if line else name,
            "ncalls": nc,
            "own_ms_per_feed": 1000.0 * tt / calls,
            "cum_ms_per_feed": 1000.0 * ct / calls,
        }
        for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.items()
    ]
    return {
        "cumulative": sorted(rows, key=lambda r: -r["cum_ms_per_feed"])[:n],
        "own": sorted(rows, key=lambda r: -r["own_ms_per_feed"])[:n],
    }


_FRAME_LINE = re.compile(r":\d+\)$")


def collapsed_summary(path: Path, n: int) -> dict[str, Any]:
    """Summarise py-spy's `--format raw` (collapsed stacks, `frame;frame;... count`): share of
    samples in which each function is on the stack (inclusive) and at its top (own)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_where(_FRAME_LINE.sub(")", f)) for f in stack.split(";")]
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    share = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "inclusive_pct": [(f, c * share) for f, c in inclusive.most_common(n)],
        "own_pct": [(f, c * share) for f, c in own.most_common(n)],
    }


def now_s() -> float:
    return datetime.now(UTC).timestamp()
