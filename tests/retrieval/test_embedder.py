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
