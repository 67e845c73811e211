from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)
from sqlalchemy.exc import IntegrityError

from core.domain import ArticleDraft, Event
from core.errors import ArticleNotFound
from core.storage import ArticleWrite, EventRow, IncompatibleDatabase, Storage


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


def _event(user: str, event_id: str, key: int = 1) -> Event:
    return Event(event_id, user, "a1", key, "click", datetime(2024, 5, 1, tzinfo=UTC))


def test_event_ids_are_unique_per_reader_and_stored_as_keyed_digests(tmp_path, database_url):
    storage = Storage(database_url or f"sqlite:///{tmp_path / 'db.sqlite'}", b"k" * 32)
    storage.record_events(
        [_event("reader-7", "e-1"), _event("reader-8", "e-1")], lambda _stored: []
    )
    # The same id from another reader is that reader's own event, not a duplicate.
    assert storage.count_events() == 2
    asked = [("reader-7", "e-1"), ("reader-8", "e-1"), ("reader-9", "e-1"), ("reader-7", "e-2")]
    assert storage.known_events(asked) == {("reader-7", "e-1"), ("reader-8", "e-1")}
    with storage.engine.connect() as conn:
        stored = set(conn.execute(select(EventRow.user_id, EventRow.event_id)).all())
    pseudonyms = [storage.pseudonym(u) for u in ("reader-7", "reader-8")]
    assert stored == {(p, storage.event_digest(p, "e-1")) for p in pseudonyms}
    assert all(d.startswith("e_") and "e-1" not in d for _, d in stored)
    # One reader's id twice is refused by the database itself, not only by the lookup.
    with pytest.raises(IntegrityError):
        storage.record_events([_event("reader-7", "e-1")], lambda _stored: [])


def test_a_database_with_the_old_event_layout_is_refused_with_what_to_do(tmp_path, database_url):
    url = database_url or f"sqlite:///{tmp_path / 'db.sqlite'}"
    old = MetaData()
    Table(  # events as the first releases created them: client ids unique across all readers
        "events",
        old,
        Column("seq", Integer, primary_key=True),
        Column("event_id", String(64), unique=True),
        Column("user_id", String(128), index=True),
        Column("article_key", Integer),
        Column("type", String(16)),
        Column("dwell_ms", Integer, nullable=True),
        Column("ts", DateTime(timezone=True)),
    )
    engine = create_engine(url)
    old.create_all(engine)
    engine.dispose()
    with pytest.raises(IncompatibleDatabase, match="Re-create the data dir"):
        Storage(url)


def test_a_database_made_by_this_code_opens_again(tmp_path, database_url):
    url = database_url or f"sqlite:///{tmp_path / 'db.sqlite'}"
    Storage(url).close()
    Storage(url).close()
