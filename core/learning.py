"""The online half of the learning loop: the exposure log, top-slot exploration, the model
registry and A/B experiments.

- `ExposureLog` records what every feed and rank answer showed, off the request path: a
  background thread writes batches every `learning.flush_seconds` (a feed costs a queue append,
  not a database write). Clicks join the exposure they came from when they are recorded.
- `TopSlotExploration`: with probability ε a feed's first slot shows a uniformly random one of
  its first `pool` items. Every first item then has a known, non-zero propensity, which is what
  an off-policy estimate of a challenger head needs (`core.retrain`); the rest of the feed keeps
  the head's order, so readers pay for it with 1 slot in 20 feeds.
- `ModelRegistry`: versions of the ranking head in the database; the champion is served by every
  process (a promotion goes out on the change log).
- `ExperimentService`: A/B experiments whose arms differ by head version or feed settings.
  Assignment is a hash of (experiment, reader pseudonym): deterministic, the same on every
  process and host with no shared state to keep in step. An experiment in "interleaving" mode
  compares two arms inside every reader's feed instead (team draft, `ranking.interleaving`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np

from core.domain import utcnow
from core.errors import Conflict, InvalidInput, NotFound, unavailable_store
from core.experiment_stats import ArmSample, analyze_all, summarize, to_json
from core.learning_store import (
    LearningStore,
    LoggedFeed,
    ShownItem,
    StoredExperiment,
)
from core.settings import LearningConfig
from core.storage import PeriodicRead
from prompts import prompt_versions
from ranking.interleaving import preference_test
from ranking.recommend import FeedConfig, RankedItem, Recommender
from ranking.scorer import ClickScorer, RankingHeadConfig

log = logging.getLogger(__name__)

COMMITTED_HEAD = "committed"  # the head in `ranking.model_dir`, before any promotion
MAX_ARMS = 6
ARM_SETTINGS = ("mmr_lambda", "freshness_half_life_hours", "category_cap")
MODES = ("ab", "interleaving")
INTERLEAVED = "interleaved"  # the arm every reader of an interleaving experiment is in


# --- exposure log ----------------------------------------------------------------------------
class ExposureLog:
    def __init__(self, store: LearningStore, config: LearningConfig) -> None:
        self.store = store
        self.config = config
        self._queue: queue.Queue[LoggedFeed] = queue.Queue(maxsize=100_000)
        self._lock = threading.Lock()  # one writer at a time: the thread or a flush()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unwritten: list[LoggedFeed] = []  # a batch the database refused, retried first
        self.dropped = 0

    def start(self) -> None:
        if self._thread is None and self.config.log_exposures:
            self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
            self._thread.start()

    def record(self, feed: LoggedFeed) -> None:
        if not self.config.log_exposures:
            return
        try:
            self._queue.put_nowait(feed)
        except queue.Full:  # the database is far behind: losing log rows beats slow feeds
            self.dropped += 1
        if self._thread is None:  # not serving (a CLI job, a unit test): write through
            self.flush()

    def flush(self) -> int:
        """Write everything queued now; returns the feeds written. A batch the database
        refuses (an outage) is kept and retried on the next flush, up to the queue's size."""
        with self._lock:
            batch, self._unwritten = self._unwritten, []
            retry = bool(batch)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                try:
                    self.store.write_feeds(batch, retry=retry)
                except Exception as exc:
                    keep = self._queue.maxsize
                    self.dropped += max(0, len(batch) - keep)
                    self._unwritten = batch[-keep:]
                    log.warning(
                        "exposure log: %d feeds not written yet (%s); retrying",
                        len(self._unwritten),
                        unavailable_store(exc) or exc,
                    )
                    return 0
            return len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_seconds):
            self.flush()

    def join_clicks(self, clicks: Sequence[tuple[str, int, Any]]) -> int:
        """(pseudonym, article key, ts) of new clicks: each marks the exposure it came from."""
        if not clicks or not self.config.log_exposures:
            return 0
        self.flush()  # the feed that showed it may still be queued
        window = timedelta(hours=self.config.click_window_hours)
        return self.store.join_clicks(clicks, window)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()


# --- exploration -----------------------------------------------------------------------------
@dataclass(slots=True)
class Explored:
    items: list[RankedItem]
    candidates: list[int]  # the pool's keys in the head's order
    propensity: float  # of the item now first
    explored: bool


class TopSlotExploration:
    def __init__(self, epsilon: float, pool: int, seed: int | None = None) -> None:
        self.epsilon = epsilon
        self.pool = pool
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # numpy generators are not thread-safe

    def apply(self, items: list[RankedItem]) -> Explored:
        m = min(self.pool, len(items))
        candidates = [i.entry.key for i in items[:m]]
        if m < 2 or self.epsilon <= 0:
            return Explored(items, candidates, 1.0, False)
        with self._lock:
            explore = self._rng.random() < self.epsilon
            pick = int(self._rng.integers(m)) if explore else 0
        # P(first = greedy) = 1 - ε + ε/m; P(first = any other pool item) = ε/m.
        propensity = (1 - self.epsilon) * (pick == 0) + self.epsilon / m
        if pick:
            items = [items[pick], *items[:pick], *items[pick + 1 :]]
        return Explored(items, candidates, propensity, explore)


def logged_feed(
    user: str,
    surface: str,
    items: Sequence[RankedItem],
    model_version: str,
    explored: Explored | None = None,
    experiment: tuple[str, str] | None = None,
    teams: Sequence[str] | None = None,
    top_propensity: float | None = None,
) -> LoggedFeed:
    """What the log keeps of one answer; positions are the organic items' order, `teams` the
    interleaving team of each item."""
    shown = [
        ShownItem(
            item.entry.key,
            position,
            float(item.score),
            1.0,
            team=teams[position] if teams else None,
        )
        for position, item in enumerate(items)
    ]
    if explored is not None and shown:
        shown[0].propensity = explored.propensity
    if top_propensity is not None and shown:
        shown[0].propensity = top_propensity
    return LoggedFeed(
        feed_id=uuid.uuid4().hex,
        user=user,
        surface=surface,
        ts=utcnow(),
        model_version=model_version,
        experiment_id=experiment[0] if experiment else None,
        arm=experiment[1] if experiment else None,
        items=shown,
        candidates=explored.candidates if explored else [],
        explored=bool(explored and explored.explored),
    )


# --- model registry --------------------------------------------------------------------------
class ModelRegistry:
    """Ranking-head versions in the database; scorers are loaded once per process."""

    def __init__(self, store: LearningStore) -> None:
        self.store = store
        self._scorers: dict[str, ClickScorer] = {}
        self._lock = threading.Lock()

    def exists(self, version: str) -> bool:
        return version == COMMITTED_HEAD or self.store.get_version(version) is not None

    def scorer(self, version: str) -> ClickScorer:
        with self._lock:
            cached = self._scorers.get(version)
        if cached is not None:
            return cached
        files = self.store.version_files(version)
        if files is None:
            raise NotFound(f"model version {version!r} is not registered")
        import json

        from safetensors.numpy import load

        config_text, weights = files
        payload = json.loads(config_text)
        scorer = ClickScorer(RankingHeadConfig(**payload["config"]), load(weights))
        with self._lock:
            self._scorers[version] = scorer
        return scorer

    def champion(self) -> str | None:
        return self.store.champion()


def use_champion(recommender: Recommender, registry: ModelRegistry) -> None:
    """Serve the registry's champion head, if one was promoted (else the committed head)."""
    champion = registry.champion()
    if champion is not None and champion != recommender.head_name:
        recommender.use_head(registry.scorer(champion), champion)
        log.info("now serving ranking head %s", champion)


class ChampionWatch:
    """Looks for a new champion every few seconds. In shared mode the change log already
    carries a promotion to every process within a poll; in embedded mode the follower only runs
    after this process's own writes, and `newsroom promote` is another process, so without
    this the server would keep the old head until restarted."""

    def __init__(self, recommender: Recommender, registry: ModelRegistry, every_s: float) -> None:
        self.recommender = recommender
        self.registry = registry
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                use_champion(self.recommender, self.registry)
            except Exception as exc:  # the database is down: the head in use keeps serving
                log.debug("champion check failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- experiments -----------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Assignment:
    experiment_id: str
    arm: str


def bucket_of(experiment_id: str, pseudonym: str) -> float:
    """A reader's uniform draw in [0, 1) for one experiment: independent across experiments,
    stable for the experiment's life, the same on every host."""
    digest = hashlib.sha256(f"{experiment_id}\x00{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_of(arms: Sequence[dict], u: float) -> str:
    total = sum(float(a["weight"]) for a in arms)
    edge = 0.0
    for arm in arms:
        edge += float(arm["weight"]) / total
        if u < edge:
            return str(arm["name"])
    return str(arms[-1]["name"])


class ExperimentService:
    def __init__(
        self,
        store: LearningStore,
        registry: ModelRegistry,
        pseudonym: Any,
        config: LearningConfig,
        cache_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pseudonym = pseudonym
        self.config = config
        self._running: PeriodicRead[StoredExperiment | None] = PeriodicRead(
            self._read_running, cache_seconds, None
        )

    # --- admin ---------------------------------------------------------------------------------
    def create(
        self, name: str, arms: list[dict], sequential: bool = True, mode: str = "ab"
    ) -> StoredExperiment:
        if not name.strip():
            raise InvalidInput("name must not be empty", field="name")
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}", field="mode")
        if not 2 <= len(arms) <= MAX_ARMS:
            raise InvalidInput(f"an experiment has 2 to {MAX_ARMS} arms", field="arms")
        if mode == "interleaving" and len(arms) != 2:
            raise InvalidInput("an interleaving experiment compares exactly 2 arms", field="arms")
        arms = [{**a, "weight": float(a.get("weight", 1.0))} for a in arms]
        if any(a["weight"] <= 0 for a in arms):
            raise InvalidInput("arm weights must be positive", field="arms")
        names = [str(a["name"]) for a in arms]
        if len(set(names)) != len(names):
            raise InvalidInput("arm names must be distinct", field="arms")
        versions = prompt_versions()
        for n, arm in enumerate(arms):
            prompt_version = arm.get("prompt_version")
            if prompt_version is not None and prompt_version not in versions:
                raise InvalidInput(
                    f"prompt version {prompt_version!r} does not exist; "
                    f"known: {', '.join(versions)}",
                    field=f"arms[{n}].prompt_version",
                )
            if prompt_version is not None and mode == "interleaving":
                raise InvalidInput(
                    "interleaving compares rankers: prompt versions need an A/B experiment",
                    field=f"arms[{n}].prompt_version",
                )
            version = arm.get("ranker_version")
            if version is not None and not self.registry.exists(version):
                raise InvalidInput(
                    f"ranker version {version!r} is not registered (see `newsroom models`); "
                    f"use {COMMITTED_HEAD!r} for the committed head",
                    field=f"arms[{n}].ranker_version",
                )
        if self.running() is not None or self.store.experiments("running"):
            raise Conflict("an experiment is already running: stop it first")
        now = utcnow()
        experiment = StoredExperiment(
            id="exp_" + uuid.uuid4().hex[:12],
            name=name.strip(),
            spec={"arms": arms, "control": names[0], "sequential": sequential, "mode": mode},
            status="running",
            created_at=now,
            started_at=now,
            stopped_at=None,
            outcome=None,
        )
        self.store.insert_experiment(experiment)
        self._forget_cache()
        return experiment

    def get(self, experiment_id: str) -> StoredExperiment:
        experiment = self.store.get_experiment(experiment_id)
        if experiment is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist")
        return experiment

    def list(self) -> list[StoredExperiment]:
        return self.store.experiments()

    def stop(self, experiment_id: str, promote: bool) -> tuple[StoredExperiment, dict]:
        experiment = self.get(experiment_id)
        if experiment.status != "running":
            raise Conflict(f"experiment {experiment_id!r} is already stopped")
        report = {**self.report(experiment), "status": "stopped"}  # the frozen final report
        winner = report["winner"]
        promoted = None
        if promote and winner is not None:
            version = next(a for a in experiment.spec["arms"] if a["name"] == winner).get(
                "ranker_version"
            )
            if version not in (None, COMMITTED_HEAD):
                self.store.promote(version)
                promoted = version
        outcome = {"winner": winner, "promoted_version": promoted, "report": report}
        if not self.store.stop_experiment(experiment_id, outcome):
            raise Conflict(f"experiment {experiment_id!r} is already stopped")
        self._forget_cache()
        return self.get(experiment_id), outcome

    # --- serving ---------------------------------------------------------------------------------
    def running(self) -> StoredExperiment | None:
        """The running experiment, read at most every `cache_seconds` (a new or stopped one
        reaches every process within that; the last one read while the database is down)."""
        return self._running.get()

    def _read_running(self) -> StoredExperiment | None:
        running = self.store.experiments("running")
        return running[0] if running else None

    def _forget_cache(self) -> None:
        self._running.invalidate()

    def assign(self, user_id: str) -> tuple[Assignment, dict] | None:
        """The reader's arm of the running experiment, with the arm's settings; in an
        interleaving experiment every reader is in arm "interleaved", whose settings hold
        both arms under "interleave"."""
        experiment = self.running()
        if experiment is None:
            return None
        arms = experiment.spec["arms"]
        if experiment.spec.get("mode") == "interleaving":
            return Assignment(experiment.id, INTERLEAVED), {"interleave": arms}
        name = arm_of(arms, bucket_of(experiment.id, self.pseudonym(user_id)))
        arm = next(a for a in arms if a["name"] == name)
        return Assignment(experiment.id, name), arm

    @staticmethod
    def prompt_versions() -> list[str]:
        """What an arm's `prompt_version` can be."""
        return prompt_versions()

    def prompt_version_of(self, user_id: str) -> str | None:
        """The prompt-template version the reader's arm writes their summaries and headlines
        with (None: the served default)."""
        assigned = self.assign(user_id)
        if assigned is None:
            return None
        return assigned[1].get("prompt_version")

    # --- report ----------------------------------------------------------------------------------
    def report(self, experiment: StoredExperiment | str) -> dict:
        if isinstance(experiment, str):
            experiment = self.get(experiment)
        if experiment.status == "stopped" and experiment.outcome:
            return experiment.outcome["report"]
        if experiment.spec.get("mode") == "interleaving":
            return interleaving_report(experiment, self.store.team_tallies(experiment.id))
        tallies = self.store.reader_tallies(experiment.id)
        start = experiment.started_at
        pre = self.store.clicks_between(
            [t.user for t in tallies],
            start - timedelta(days=self.config.pre_period_days),
            start,
        )
        samples: dict[str, ArmSample] = {}
        for arm in experiment.spec["arms"]:
            mine = [t for t in tallies if t.arm == arm["name"]]
            samples[arm["name"]] = ArmSample(
                name=arm["name"],
                feeds=np.array([t.feeds for t in mine], dtype=float),
                exposures=np.array([t.exposures for t in mine], dtype=float),
                clicks=np.array([t.clicks for t in mine], dtype=float),
                pre_clicks=np.array([pre.get(t.user, 0) for t in mine], dtype=float),
            )
        control = samples[experiment.spec["control"]]
        sequential = bool(experiment.spec.get("sequential", True))
        return build_report(experiment, control, samples, sequential)


def build_report(
    experiment: StoredExperiment,
    control: ArmSample,
    samples: dict[str, ArmSample],
    sequential: bool,
) -> dict:
    """Per arm figures and each treatment against the control (Bonferroni over treatments);
    the winner is the treatment with the largest significant gain in clicks per feed, else
    None (the control is never "the winner": stopping keeps what is served)."""
    treatments = [s for name, s in samples.items() if s is not control]
    comparisons = analyze_all(control, treatments, sequential=sequential)
    by_name = {c.treatment.name: c for c in comparisons}
    winner, best = None, 0.0
    arms: list[dict] = []
    for arm in experiment.spec["arms"]:
        name = arm["name"]
        comparison = by_name.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "settings": {k: v for k, v in arm.items() if k != "name"},
            **to_json(summarize(samples[name])),
            "comparison": None,
        }
        if comparison is not None:
            entry["comparison"] = to_json(comparison.clicks_per_feed)
            entry["ctr_comparison"] = to_json(comparison.ctr)
            difference = comparison.clicks_per_feed.difference
            if comparison.significant and difference is not None and difference > best:
                winner, best = name, difference
        arms.append(entry)
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "status": experiment.status,
        "started_at": experiment.started_at.isoformat(),
        "control": control.name,
        "method": "sequential" if sequential else "fixed",
        "metric": "clicks_per_feed",
        "arms": arms,
        "winner": winner,
    }


def interleaving_report(
    experiment: StoredExperiment, tallies: Sequence[tuple[str, str, int, int, int]]
) -> dict:
    """Team-draft credit per reader: the arm whose contributed items the reader clicked more
    (over all their interleaved feeds) wins that reader; an exact sign test of the non-tied
    readers against 1/2 says whether either arm is preferred. One comparison per reader, not
    per feed, because one reader's feeds are not independent. The test is fixed-horizon: read
    it once, at the number of readers planned up front (see the README for the sizing)."""
    arms = experiment.spec["arms"]
    control, treatment = arms[0]["name"], arms[1]["name"]
    team_arm = {"a": control, "b": treatment}
    per_reader: dict[str, dict[str, int]] = {}
    totals = {name: {"feeds": 0, "exposures": 0, "clicks": 0} for name in team_arm.values()}
    feeds_of: dict[str, int] = {}
    for user, team, feeds, shown, clicked in tallies:
        name = team_arm.get(team)
        if name is None:
            continue
        per_reader.setdefault(user, {"a": 0, "b": 0})[team] += clicked
        feeds_of[user] = feeds
        totals[name]["exposures"] += shown
        totals[name]["clicks"] += clicked
    wins = {"a": 0, "b": 0}
    for clicks in per_reader.values():
        if clicks["a"] != clicks["b"]:
            wins["a" if clicks["a"] > clicks["b"] else "b"] += 1
    readers, feeds = len(per_reader), sum(feeds_of.values())
    ties = readers - wins["a"] - wins["b"]
    p_value = preference_test(wins["a"], wins["b"])
    decided = wins["a"] + wins["b"]
    significant = p_value < 0.05
    entries = []
    for arm in arms:
        name = arm["name"]
        clicks, shown = totals[name]["clicks"], totals[name]["exposures"]
        entries.append(
            {
                "name": name,
                "settings": {k: v for k, v in arm.items() if k != "name"},
                "readers": readers,
                "feeds": feeds,
                "exposures": shown,
                "clicks": clicks,
                "clicks_per_feed": clicks / feeds if feeds else None,
                "clicks_per_feed_ci": None,
                "ctr": clicks / shown if shown else None,
                "ctr_ci": None,
                "comparison": None,
            }
        )
    entries[1]["comparison"] = {
        "method": "team-draft interleaving, sign test",
        "wins": wins["b"],
        "losses": wins["a"],
        "ties": ties,
        # the treatment's share of the readers with a preference; 0.5 = no difference
        "difference": wins["b"] / decided - 0.5 if decided else None,
        "p_value": p_value,
        "significant": significant,
    }
    winner = treatment if significant and wins["b"] > wins["a"] else None
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "status": experiment.status,
        "started_at": experiment.started_at.isoformat(),
        "control": control,
        "method": "interleaving",
        "metric": "reader_preference",
        "arms": entries,
        "winner": winner,
    }


def arm_recommender(
    base: Recommender, arm: dict, registry: ModelRegistry, committed: ClickScorer | None
) -> Recommender:
    """The recommender an arm serves with: another head and/or feed settings."""
    version = arm.get("ranker_version")
    scorer = None
    if version == COMMITTED_HEAD:
        scorer = committed
    elif version is not None:
        scorer = registry.scorer(version)
    overrides = {k: arm[k] for k in ARM_SETTINGS if arm.get(k) is not None}
    config: FeedConfig | None = replace(base.config, **overrides) if overrides else None
    return base.variant(scorer, config, version)
