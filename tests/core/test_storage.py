from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from core.domain import ArticleDraft
from core.errors import ArticleNotFound
from core.storage import ArticleWrite, Storage


def _write(draft: ArticleDraft, vector: np.ndarray | None, key: int | None = None) -> ArticleWrite:
    return ArticleWrite(draft, draft.id or "", draft.content_hash(), vector, key)


def test_round_trip(tmp_path, database_url):
    storage = Storage(database_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    published = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    draft = ArticleDraft(
        id="a1",
        title="Café prices rise",
        body="Body text",
        category="business",
        url="https://example.org/a1",
        language="en",
        published_at=published,
    )
    vector = np.arange(4, dtype=np.float32)
    (key,) = storage.write_articles([_write(draft, vector)], "model-x")

    article = storage.get_article("a1")
    assert article.key == key
    assert (article.title, article.body, article.category) == (
        "Café prices rise",
        "Body text",
        "business",
    )
    assert article.url == "https://example.org/a1" and article.language == "en"
    assert article.published_at == published
    assert article.created_at.tzinfo is not None
    assert article.content_hash == draft.content_hash()
    stored_key, stored_vector = storage.embedding_of("a1")
    assert stored_key == key
    np.testing.assert_array_equal(stored_vector, vector)
    assert storage.existing(["a1", "zz"])["a1"].embedding_model == "model-x"
    assert storage.count_articles() == 1


def test_update_keeps_key_and_embedding_when_text_unchanged(tmp_path, database_url):
    storage = Storage(database_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    draft = ArticleDraft(id="a1", title="T", body="B", category="x")
    (key,) = storage.write_articles([_write(draft, np.ones(4, np.float32))], "m")
    draft.category = "y"
    storage.write_articles([_write(draft, None, key)], "m")
    assert storage.get_article("a1").category == "y"
    np.testing.assert_array_equal(storage.embedding_of("a1")[1], np.ones(4, np.float32))


def test_catalog_rows_delete_and_embeddings_stream(tmp_path, database_url):
    storage = Storage(database_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    writes = [
        _write(
            ArticleDraft(
                id=f"a{i}",
                title=f"T{i}",
                category="sport" if i % 2 else "tech",
                published_at=datetime(2024, 1, 1 + i, tzinfo=UTC),
            ),
            np.full(3, i, np.float32),
        )
        for i in range(6)
    ]
    keys = storage.write_articles(writes, "m")
    rows = list(storage.catalog_rows())
    assert [r[0] for r in rows] == keys
    assert rows[1][3] == "sport" and rows[4][4] == datetime(2024, 1, 5, tzinfo=UTC)

    storage.delete_article("a0")
    with pytest.raises(ArticleNotFound):
        storage.get_article("a0")
    with pytest.raises(ArticleNotFound):
        storage.delete_article("a0")
    streamed_keys, vectors = next(storage.embeddings(batch=100))
    assert streamed_keys.tolist() == keys[1:]
    assert vectors.shape == (5, 3) and vectors.dtype == np.float32
