"""FAISS vector index over article keys, with update/remove, filters and atomic snapshots.

Positions inside FAISS are append-only; `_keys[position]` maps back to the article key (-1 marks
a tombstone left by an update or removal). Removing from HNSW is impossible in FAISS, so both
kinds use tombstones plus compaction, which keeps one code path for flat and HNSW.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from itertools import repeat
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw"]
SNAPSHOT_FORMAT = 1


@dataclass(slots=True)
class IndexConfig:
    hnsw_threshold: int = 20_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 96
    compact_ratio: float = 0.2  # compact when tombstones exceed this share of positions
    exact_subset_max: int = 5_000  # filtered searches over at most this many rows are exact


def kind_for(n_live: int, config: IndexConfig) -> IndexKind:
    """Exact flat search while it is cheap, HNSW above the threshold."""
    return "hnsw" if n_live > config.hnsw_threshold else "flat"


class SnapshotError(Exception):
    """The snapshot file is missing, unreadable or made for another model/dimension."""


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Validate (n, dim) float vectors at the FAISS boundary; returns contiguous float32."""
    if not isinstance(vectors, np.ndarray):
        raise TypeError(f"vectors must be a numpy array, got {type(vectors).__name__}")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise TypeError(f"vectors must be floating point, got {vectors.dtype}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    return vectors


class ArticleIndex:
    """Inner-product search over L2-normalised vectors (= cosine similarity)."""

    def __init__(
        self,
        dim: int,
        config: IndexConfig | None = None,
        kind: IndexKind = "flat",
        auto_kind: bool = True,
    ):
        """`auto_kind`: switch flat <-> HNSW as the index grows or shrinks past the threshold
        (off when the caller chose the kind, e.g. an exact reference index)."""
        self.dim = dim
        self.auto_kind = auto_kind
        self.config = config or IndexConfig()
        self.kind: IndexKind = kind
        self._index = self._new_faiss(kind)
        self._keys = np.empty(0, dtype=np.int64)
        self._hashes: list[str] = []
        self._position: dict[int, int] = {}
        self._tombstones = 0
        self._lock = threading.Lock()
        self._not_dead: faiss.IDSelector | None = None  # cached selector excluding tombstones
        self._dead: faiss.IDSelector | None = None  # its child: the Not selector does not own it
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # keys sorted, positions

    # --- construction ---------------------------------------------------------------------
    def _new_faiss(self, kind: IndexKind) -> faiss.Index:
        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config.hnsw_ef_construction
        index.hnsw.efSearch = self.config.hnsw_ef_search
        return index

    def kind_for(self, n_live: int) -> IndexKind:
        return kind_for(n_live, self.config)

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        vectors: np.ndarray,
        hashes: list[str],
        dim: int,
        config: IndexConfig | None = None,
        kind: IndexKind | None = None,
    ) -> ArticleIndex:
        config = config or IndexConfig()
        chosen = kind or kind_for(len(keys), config)
        index = cls(dim, config, chosen, auto_kind=kind is None)
        index.add(keys, vectors, hashes)
        return index

    # --- mutation -------------------------------------------------------------------------
    def add(self, keys: np.ndarray, vectors: np.ndarray, hashes: list[str]) -> None:
        """Add or replace the vectors of `keys` (an existing key is updated in place)."""
        keys = np.asarray(keys, dtype=np.int64)
        vectors = check_vectors(vectors, self.dim)
        if len(keys) != len(vectors) or len(hashes) != len(keys):
            raise ValueError("keys, vectors and hashes must have the same length")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("duplicate keys in one add")
        with self._lock:
            self._tombstone(keys)
            start = int(self._index.ntotal)
            self._index.add(vectors)
            self._keys = np.concatenate([self._keys, keys])
            self._hashes.extend(hashes)
            for offset, key in enumerate(keys.tolist()):
                self._position[key] = start + offset
            self._not_dead = None
            self._sorted = None
            self._maybe_compact()

    def remove(self, keys: np.ndarray) -> int:
        with self._lock:
            removed = self._tombstone(np.asarray(keys, dtype=np.int64))
            self._not_dead = None
            self._sorted = None
            self._maybe_compact()
            return removed

    def _tombstone(self, keys: np.ndarray) -> int:
        removed = 0
        for key in keys.tolist():
            position = self._position.pop(key, None)
            if position is not None:
                self._keys[position] = -1
                self._hashes[position] = ""
                removed += 1
        self._tombstones += removed
        return removed

    def _maybe_compact(self) -> None:
        total = int(self._index.ntotal)
        wrong_kind = self.auto_kind and self.kind_for(len(self._position)) != self.kind
        # Switch kind only with hysteresis, so an index at the threshold does not flip-flop.
        grow = self.kind == "flat" and len(self._position) > self.config.hnsw_threshold
        shrink = self.kind == "hnsw" and len(self._position) < self.config.hnsw_threshold // 2
        if (total and self._tombstones / total > self.config.compact_ratio) or (
            wrong_kind and (grow or shrink)
        ):
            self._compact()

    def _compact(self) -> None:
        live = np.flatnonzero(self._keys >= 0)
        vectors = self._vectors_at(live)
        kind = self.kind_for(len(live)) if self.auto_kind else self.kind
        log.info(
            "compacting index: %d live of %d positions -> %s", len(live), len(self._keys), kind
        )
        self._index = self._new_faiss(kind)
        self.kind = kind
        if len(live):
            self._index.add(vectors)
        self._keys = self._keys[live]
        self._hashes = [self._hashes[p] for p in live.tolist()]
        self._position = {k: p for p, k in enumerate(self._keys.tolist())}
        self._tombstones = 0
        self._not_dead = None
        self._sorted = None

    def _storage(self) -> faiss.IndexFlat:
        return self._index if self.kind == "flat" else faiss.downcast_index(self._index.storage)

    def _vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), d) copy of stored vectors, read without reconstructing one by one."""
        total = int(self._index.ntotal)
        if total == 0 or len(positions) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        storage = self._storage()
        flat = faiss.rev_swig_ptr(storage.get_xb(), total * self.dim)
        # Indexing by an integer array copies already: nothing refers to FAISS memory after.
        return np.asarray(flat).reshape(total, self.dim)[np.asarray(positions, dtype=np.int64)]

    # --- queries --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._position)

    def __contains__(self, key: int) -> bool:
        return key in self._position

    def hash_of(self, key: int) -> str | None:
        """The content hash the entry for `key` was indexed with (None: not indexed)."""
        position = self._position.get(key)
        return None if position is None else self._hashes[position]

    def vector(self, key: int) -> np.ndarray:
        with self._lock:
            position = self._position.get(key)
            if position is None:
                raise KeyError(key)
            return self._vectors_at(np.array([position]))[0]

    def vectors(self, keys: list[int]) -> tuple[list[int], np.ndarray]:
        """(the keys that are indexed, their vectors (n, d)) in the order given."""
        with self._lock:
            found = np.fromiter(
                map(self._position.get, keys, repeat(-1)), dtype=np.int64, count=len(keys)
            )
            hit = found >= 0
            if hit.all():  # the feed's candidates come from the index: nearly always
                return list(keys), self._vectors_at(found)
            present = [k for k, ok in zip(keys, hit.tolist(), strict=True) if ok]
            return present, self._vectors_at(found[hit])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed_keys: np.ndarray | None = None,
        exclude_keys: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product. Returns (scores (q, k) float32, keys (q, k) int64); slots
        without a result hold score -inf and key -1. `allowed_keys` restricts the search to
        those articles (filters); `exclude_keys` removes some (e.g. the query article)."""
        queries = check_vectors(queries, self.dim)
        if k < 1:
            raise ValueError("k must be >= 1")
        with self._lock:
            if not self._position:
                return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0)), k)
            excluded = np.asarray(exclude_keys if exclude_keys is not None else [], np.int64)
            if allowed_keys is None:
                # Exclusions are few (the query article): over-fetch and drop them afterwards
                # rather than building a selector over every live vector.
                scores, keys = self._search_selected(queries, k + len(excluded))
                if len(excluded):
                    drop = np.isin(keys, excluded)
                    scores = np.where(drop, -np.inf, scores)
                    order = np.argsort(-scores, axis=1, kind="stable")
                    scores = np.take_along_axis(scores, order, axis=1)
                    keys = np.where(
                        np.isneginf(scores), -1, np.take_along_axis(keys, order, axis=1)
                    )
                return _pad(scores[:, :k], keys[:, :k], k)
            positions = self._positions_of(np.asarray(allowed_keys, np.int64))
            if len(excluded):
                positions = positions[~np.isin(self._keys[positions], excluded)]
            # Filtered search is always exact: HNSW graph search under a filter loses recall
            # (0.74 recall@10 measured at 25% selectivity), while scanning only the allowed
            # rows is cheap. Small subsets: gather + one product; larger: a selector scan.
            if len(positions) <= self.config.exact_subset_max:
                return self._exact_subset(queries, k, positions)
            return self._exact_selected(queries, k, positions)

    def _exact_selected(
        self, queries: np.ndarray, k: int, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over `positions` by the flat vector storage with an id selector: only
        the selected rows get a distance computed, nothing is copied."""
        selector = faiss.IDSelectorBatch(positions.astype(np.int64))
        fetch = min(k, len(positions))
        params = faiss.SearchParameters(sel=selector)
        scores, found = self._storage().search(queries, fetch, params=params)
        keys = np.where(found >= 0, self._keys[np.maximum(found, 0)], -1)
        scores = np.where(keys >= 0, scores, -np.inf).astype(np.float32)
        return _pad(scores, keys, k)

    def _search_selected(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered search of the index itself, skipping tombstones."""
        fetch = min(k, int(self._index.ntotal)) or 1
        params = self._params(self._not_dead_selector(), fetch)
        scores, found = self._index.search(queries, fetch, params=params)
        keys = np.where(found >= 0, self._keys[np.maximum(found, 0)], -1)
        scores = np.where(keys >= 0, scores, -np.inf).astype(np.float32)
        return _pad(scores, keys, k)

    def _positions_of(self, keys: np.ndarray) -> np.ndarray:
        """Positions of the live entries among `keys`, vectorised (filters pass many keys)."""
        if self._sorted is None:
            order = np.argsort(self._keys, kind="stable")
            self._sorted = (self._keys[order], order)
        sorted_keys, order = self._sorted
        if len(sorted_keys) == 0 or len(keys) == 0:
            return np.empty(0, np.int64)
        at = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        hit = (sorted_keys[at] == keys) & (keys >= 0)
        return order[at[hit]].astype(np.int64)

    def _exact_subset(
        self, queries: np.ndarray, k: int, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(positions) == 0:
            return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0)), k)
        scores = queries @ self._vectors_at(positions).T  # (q, m)
        top = min(k, len(positions))
        part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        keys = self._keys[positions[best]]
        return _pad(np.take_along_axis(scores, best, axis=1).astype(np.float32), keys, k)

    def _not_dead_selector(self) -> faiss.IDSelector | None:
        if self._tombstones == 0:
            return None
        if self._not_dead is None:
            dead = faiss.IDSelectorBatch(np.flatnonzero(self._keys < 0).astype(np.int64))
            self._not_dead = faiss.IDSelectorNot(dead)
            self._dead = dead
        return self._not_dead

    def _params(self, selector: faiss.IDSelector | None, k: int) -> faiss.SearchParameters | None:
        if self.kind == "hnsw":
            ef = max(self.config.hnsw_ef_search, k)
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    # --- consistency and persistence ------------------------------------------------------
    def state(self) -> dict[int, str]:
        """key -> content hash of every live entry (compared with the database on start)."""
        with self._lock:
            return {k: self._hashes[p] for k, p in self._position.items()}

    def save(self, path: Path, model_name: str) -> None:
        """Atomic snapshot: one file written beside the target, fsynced, then renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            live = np.flatnonzero(self._keys >= 0)
            meta = {
                "format": SNAPSHOT_FORMAT,
                "dim": self.dim,
                "kind": self.kind,
                "model": model_name,
                "config": asdict(self.config),
            }
            buffer = io.BytesIO()
            np.savez(
                buffer,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                index=faiss.serialize_index(self._index),
                keys=self._keys,
                hashes=np.array(self._hashes, dtype="U32"),
                live=live,
            )
        # Unique per process: API processes on one host may save the same snapshot at once.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, model_name: str, config: IndexConfig | None = None) -> ArticleIndex:
        path = Path(path)
        if not path.exists():
            raise SnapshotError(f"no snapshot at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                raw_index = data["index"]
                keys = data["keys"].astype(np.int64)
                hashes = [str(h) for h in data["hashes"]]
        except Exception as exc:  # a torn or foreign file: the caller rebuilds
            raise SnapshotError(f"unreadable snapshot {path}: {exc}") from exc
        if meta.get("format") != SNAPSHOT_FORMAT or meta.get("model") != model_name:
            raise SnapshotError(f"snapshot {path} was made for another model or format")
        index = cls(int(meta["dim"]), config, meta["kind"])
        index._index = faiss.deserialize_index(raw_index)
        if index.kind == "hnsw":
            index._index.hnsw.efSearch = index.config.hnsw_ef_search
        if int(index._index.ntotal) != len(keys) or len(hashes) != len(keys):
            raise SnapshotError(f"snapshot {path} is inconsistent")
        index._keys = keys
        index._hashes = hashes
        index._position = {k: p for p, k in enumerate(keys.tolist()) if k >= 0}
        index._tombstones = int((keys < 0).sum())
        return index


def _pad(scores: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.asarray(keys, dtype=np.int64)
    have = scores.shape[1]
    if have >= k:
        return scores[:, :k], keys[:, :k]
    fill = k - have
    return (
        np.hstack([scores, np.full((len(scores), fill), -np.inf, np.float32)]),
        np.hstack([keys, np.full((len(keys), fill), -1, np.int64)]),
    )
