"""The CTranslate2 engine gives sentence-transformers' vectors, converted once, without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from core.settings import Settings
from retrieval.embedder import CTranslate2Engine, Embedder, SentenceTransformerEngine

TEXTS = [
    "Bank of England raises interest rates to 5.25% as inflation stays high",
    "A short one",
    "The striker scored twice in the second half. " * 40,  # past the 256-token window
    "",
]


def test_ctranslate2_vectors_match_sentence_transformers(tmp_path: Path) -> None:
    path = Path(Settings().retrieval.model_path())
    converted = Embedder(path, batch_size=2, threads=1, cache_root=tmp_path)
    assert isinstance(converted.engine, CTranslate2Engine)
    assert len(list(tmp_path.glob("encoder-ct2-*/model.bin"))) == 1
    reference = SentenceTransformerEngine(path)
    got, expected = converted.encode(TEXTS), reference.encode(TEXTS, 2)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((got * expected).sum(axis=1).min()) > 0.9999
    assert converted.engine.token_lengths(TEXTS) == reference.token_lengths(TEXTS)
    # A second embedder reuses the converted copy: no second conversion directory.
    Embedder(path, cache_root=tmp_path)
    assert len([p for p in tmp_path.iterdir()]) == 1


def test_serving_imports_no_torch(tmp_path: Path) -> None:
    """An API process keeps torch out: the encoder and the ranking head load without it."""
    script = (
        "import sys\n"
        "from core.settings import Settings\n"
        "from retrieval.embedder import Embedder\n"
        "import api.app, core.service, ranking.recommend\n"
        f"Embedder(Settings().retrieval.model_path(), cache_root={str(tmp_path)!r})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers')"
        " if m in sys.modules))\n"
    )
    # The first Embedder converts (that may import torch); the check runs in a fresh process.
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    fresh = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    assert fresh.stdout.strip().splitlines()[-1] == "[]"


def test_an_empty_input_gives_no_rows(embedder: Embedder) -> None:
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_int8_runs_on_the_same_copy_with_interchangeable_vectors(tmp_path: Path) -> None:
    path = Path(Settings().retrieval.model_path())
    exact = Embedder(path, batch_size=2, threads=1, cache_root=tmp_path)
    quantized = Embedder(path, batch_size=2, threads=1, cache_root=tmp_path, precision="int8")
    assert quantized.name == exact.name  # same stored model id: one index holds both
    assert len(list(tmp_path.iterdir())) == 1  # quantized on load, not converted again
    texts = [t for t in TEXTS if t] + [
        "Oil prices fall as OPEC raises output",
        "The manager was sacked after five defeats in a row",
        "Crude futures slide on supply worries",
        "Club parts ways with its coach after a losing streak",
    ]
    got, expected = quantized.encode(texts), exact.encode(texts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * expected).sum(axis=1)
    assert float(cosine.min()) > 0.99 and float(cosine.max()) < 0.99999  # close, not identical
    # Same nearest neighbour for every text (oil with oil, football with football).
    for vectors in (got, expected):
        scores = vectors @ vectors.T
        np.fill_diagonal(scores, -1)
        assert scores[-4].argmax() == len(texts) - 2 and scores[-3].argmax() == len(texts) - 1


def test_int8_is_refused_for_a_folder_only_sentence_transformers_runs(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match="PRECISION=float32"):
        Embedder(tmp_path, cache_root=tmp_path, precision="int8")
