"""Bring the vector index in line with the database, which is the source of truth.

On start the snapshot is loaded and compared entry by entry (key + content hash) with the
database; differences are repaired from the stored embeddings, and a missing, torn or foreign
snapshot is rebuilt from them. Nothing is re-encoded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.storage import Storage
from retrieval.index import ArticleIndex, IndexConfig, SnapshotError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncReport:
    loaded_snapshot: bool
    added: int
    removed: int

    @property
    def changed(self) -> bool:
        return not self.loaded_snapshot or bool(self.added or self.removed)


def rebuild_index(
    storage: Storage, dim: int, config: IndexConfig, progress: bool = False
) -> ArticleIndex:
    states = storage.stored_states()
    hash_of = {s.key: s.content_hash for s in states}
    key_parts, vector_parts = [], []
    with tqdm(total=len(states), desc="read embeddings", unit="art", disable=not progress) as bar:
        for keys, vectors in storage.embeddings():
            key_parts.append(keys)
            vector_parts.append(vectors)
            bar.update(len(keys))
    if not key_parts:
        return ArticleIndex(dim, config)
    keys = np.concatenate(key_parts)
    # One build of the final kind: batch-wise adds would cross the flat/HNSW threshold and
    # compact back and forth on the way up.
    return ArticleIndex.build(
        keys, np.concatenate(vector_parts), [hash_of[k] for k in keys.tolist()], dim, config
    )


def open_index(
    storage: Storage,
    path: Path,
    model_name: str,
    dim: int,
    config: IndexConfig,
    progress: bool = False,
) -> tuple[ArticleIndex, SyncReport]:
    """Load the snapshot at `path` and reconcile it with `storage`, or rebuild it."""
    states = storage.stored_states()
    foreign = [s.id for s in states if s.embedding_model != model_name]
    if foreign:
        log.warning(
            "%d articles were embedded with another model; re-ingest them to re-embed (e.g. %s)",
            len(foreign),
            foreign[0],
        )
    try:
        index = ArticleIndex.load(path, model_name, config)
        if index.dim != dim:
            raise SnapshotError(f"snapshot dimension {index.dim} != model dimension {dim}")
    except SnapshotError as exc:
        log.info("rebuilding index from stored embeddings: %s", exc)
        return rebuild_index(storage, dim, config, progress), SyncReport(False, len(states), 0)

    in_index = index.state()
    in_db = {s.key: s.content_hash for s in states}
    stale = [k for k, h in in_index.items() if in_db.get(k) != h]
    missing = [k for k, h in in_db.items() if in_index.get(k) != h]
    if stale:
        index.remove(np.array(stale, dtype=np.int64))
    for keys, vectors in storage.embeddings(missing):
        index.add(keys, vectors, [in_db[k] for k in keys.tolist()])
    if stale or missing:
        log.info("index repaired: %d added/updated, %d removed", len(missing), len(stale))
    return index, SyncReport(True, len(missing), len(set(stale) - set(missing)))
