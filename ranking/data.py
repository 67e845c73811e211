"""MIND impressions as training/evaluation data for the ranking head.

Layout (see ../shared/data/README.md): `impressions.jsonl` with inline titles and click labels,
and `news.tsv` with category and abstract per news id. Items are embedded exactly as the service
embeds articles (title + lead of the abstract) when their id is in news.tsv, else from the title.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from core.datasets import read_mind_news_rows
from core.domain import clean_text
from ranking.features import (
    CoClickCounts,
    PopularityCounts,
    UserContext,
    candidate_features,
)
from retrieval.embedder import Embedder, article_text

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


@dataclass(slots=True)
class MindItem:
    id: str  # the news id, or "title:<title>" where MIND only kept the title
    title: str
    clicked: int = 0


@dataclass(slots=True)
class MindImpression:
    impression_id: str
    history: list[MindItem]
    candidates: list[MindItem]
    user_key: str = ""

    def fingerprint(self) -> str:
        text = (
            "|".join(i.id for i in self.history)
            + "#"
            + "|".join(f"{c.id}:{c.clicked}" for c in self.candidates)
        )
        return hashlib.sha1(text.encode()).hexdigest()

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.clicked for c in self.candidates], dtype=np.float32)


def _item(record: dict) -> MindItem:
    title = clean_text(record.get("title") or "")
    nid = record.get("nid")
    return MindItem(nid or f"title:{title}", title, int(record.get("clicked", 0)))


def read_impressions(data_dir: Path, limit: int | None = None) -> list[MindImpression]:
    file = Path(data_dir) / "impressions.jsonl"
    if not file.exists():
        raise FileNotFoundError(f"{file} is missing: --data must hold impressions.jsonl + news.tsv")
    impressions: list[MindImpression] = []
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            impressions.append(
                MindImpression(
                    impression_id=str(record["impression_id"]),
                    history=[_item(h) for h in record.get("history", [])],
                    candidates=[_item(c) for c in record.get("candidates", [])],
                    user_key=str(record.get("user_key") or record["impression_id"]),
                )
            )
            if limit is not None and len(impressions) >= limit:
                break
    return impressions


def split_of(impression_id: str, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """Deterministic split by impression: the same id lands in the same split on every run."""
    digest = hashlib.sha1(f"{seed}:{impression_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


@dataclass
class ItemCatalog:
    """Every item of a MIND directory: its embedding row and category."""

    row: dict[str, int]
    vectors: np.ndarray  # (N, d)
    category: dict[str, str]

    def vectors_of(self, items: Sequence[MindItem]) -> np.ndarray:
        return self.vectors[[self.row[i.id] for i in items]]


class EmbeddingCache:
    """Text -> vector cache on disk, keyed by model and text hash, so training and evaluation
    never re-encode the same text twice."""

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        self.embedder = embedder
        self.path = Path(directory) / f"text-embeddings-{embedder.name}.npz"
        self._rows: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as data:
                self._rows = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            by_key = {self._key(t): t for t in texts}
            todo = [by_key[k] for k in missing]
            vectors = []
            step = 512
            for start in tqdm(
                range(0, len(todo), step), desc="embed texts", unit="batch", disable=not progress
            ):
                vectors.append(self.embedder.encode(todo[start : start + step]))
            for key, vector in zip(missing, np.concatenate(vectors), strict=True):
                self._rows[key] = vector
            self._save()
        return np.stack([self._rows[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(self._rows)), vectors=np.stack(list(self._rows.values())))
        tmp.replace(self.path)


def build_catalog(
    data_dir: Path,
    impressions: Sequence[MindImpression],
    cache: EmbeddingCache,
    progress: bool = False,
) -> ItemCatalog:
    news = {row.nid: row for row in read_mind_news_rows(Path(data_dir))}
    items: dict[str, MindItem] = {}
    for imp in impressions:
        for item in (*imp.history, *imp.candidates):
            items.setdefault(item.id, item)
    ids = list(items)
    texts = []
    category: dict[str, str] = {}
    for item_id in ids:
        row = news.get(item_id)
        if row is not None:
            texts.append(article_text(row.title, row.abstract, cache.embedder.lead_words))
            category[item_id] = row.category
        else:
            texts.append(items[item_id].title)
    vectors = cache.encode(texts, progress=progress)
    return ItemCatalog({i: n for n, i in enumerate(ids)}, vectors, category)


@dataclass
class InteractionStats:
    """Popularity and co-clicks counted on training impressions only."""

    popularity: PopularityCounts
    coclick: CoClickCounts

    @classmethod
    def from_impressions(cls, impressions: Sequence[MindImpression]) -> InteractionStats:
        popularity, coclick = PopularityCounts(), CoClickCounts()
        for imp in impressions:
            clicked = [c.id for c in imp.candidates if c.clicked]
            for item in clicked:
                popularity.add(item)
            for candidate in imp.candidates:
                popularity.add_shown(candidate.id)
            coclick.add_basket([h.id for h in imp.history] + clicked)
        return cls(popularity, coclick)


@dataclass
class ImpressionArrays:
    history: np.ndarray  # (L, d)
    candidates: np.ndarray  # (C, d)
    categories: list[str | None]
    features: np.ndarray  # (C, F)
    labels: np.ndarray  # (C,)


def user_context(imp: MindImpression, catalog: ItemCatalog, max_history: int) -> UserContext:
    # MIND history order is not click order; keep the last `max_history` as given.
    history = list({h.id: h for h in imp.history}.values())[-max_history:]
    vectors = catalog.vectors_of(history) if history else np.empty((0, catalog.vectors.shape[1]))
    profile = None
    if len(vectors):
        mean = vectors.mean(axis=0)
        profile = (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)
    counts: dict[str, float] = {}
    for h in history:
        cat = catalog.category.get(h.id)
        if cat:
            counts[cat] = counts.get(cat, 0.0) + 1.0
    total = sum(counts.values())
    affinity = {c: n / total for c, n in counts.items()} if total else {}
    return UserContext(vectors.astype(np.float32), [h.id for h in history], profile, affinity)


def impression_arrays(
    imp: MindImpression,
    catalog: ItemCatalog,
    stats: InteractionStats,
    max_history: int,
    leave_one_out: bool,
) -> ImpressionArrays:
    """Features for one impression. With `leave_one_out` (training impressions) the
    impression's own clicks are removed from the counts it is scored with, so the head cannot
    learn to read its label out of the popularity and co-click features."""
    user = user_context(imp, catalog, max_history)
    candidate_ids = [c.id for c in imp.candidates]
    popularity = stats.popularity.raw(candidate_ids)
    shown = stats.popularity.raw_shown(candidate_ids)
    coclick = stats.coclick.raw(user.history_ids, candidate_ids)
    if leave_one_out:
        labels = imp.labels
        popularity = popularity - labels
        shown = shown - 1.0
        history = set(user.history_ids)
        clicked = {c.id for c in imp.candidates if c.clicked}
        basket = history | clicked
        for n, cid in enumerate(candidate_ids):
            if cid in basket:
                coclick[n] -= len(history - {cid})
        coclick = np.maximum(coclick, 0)
    vectors = catalog.vectors_of(imp.candidates)
    categories = [catalog.category.get(c) for c in candidate_ids]
    features = candidate_features(
        user, vectors, categories, popularity, stats.popularity.max, shown, coclick
    )
    return ImpressionArrays(user.history_vectors, vectors, categories, features, imp.labels)
