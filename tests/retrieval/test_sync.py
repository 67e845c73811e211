"""The index follows the database: snapshot reuse, repair of a stale one, rebuild of a lost one,
all without re-encoding."""

from __future__ import annotations

import numpy as np

from core.service import NewsroomService


def _reopen(settings, embedder, monkeypatch) -> NewsroomService:
    # Any re-encoding on start would be a bug: the embeddings are stored.
    def no_encoding(*_args, **_kwargs):
        raise AssertionError("index start-up must not re-encode")

    monkeypatch.setattr(embedder, "encode", no_encoding)
    try:
        return NewsroomService.from_settings(settings, embedder=embedder)
    finally:
        monkeypatch.undo()


def _search_ids(service: NewsroomService, text: str) -> list[str]:
    return [h.article.id for h in service.articles.search(text, k=3)]


def test_snapshot_reused_then_rebuilt_after_deletion(
    settings, embedder, headline_drafts, monkeypatch
):
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts)
    expected = _search_ids(service, "football match")
    service.close()
    assert settings.index_path.exists()

    again = _reopen(settings, embedder, monkeypatch)
    assert again.sync_report.loaded_snapshot and not again.sync_report.changed
    assert _search_ids(again, "football match") == expected
    again.close()

    settings.index_path.unlink()
    rebuilt = _reopen(settings, embedder, monkeypatch)
    assert not rebuilt.sync_report.loaded_snapshot
    assert len(rebuilt.articles.index) == 6
    assert _search_ids(rebuilt, "football match") == expected
    rebuilt.close()


def test_stale_snapshot_is_repaired(settings, embedder, headline_drafts):
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts[:3])
    service.articles.save_index()  # snapshot knows h1..h3
    service.articles.ingest(headline_drafts[3:])  # acknowledged in the DB...
    service.articles.delete_article("h1")
    service.storage.close()  # ...then the process dies before saving the index

    reopened = NewsroomService.from_settings(settings, embedder=embedder)
    report = reopened.sync_report
    assert report.loaded_snapshot and report.added == 3 and report.removed == 1
    states = {s.key: s.content_hash for s in reopened.storage.stored_states()}
    assert reopened.articles.index.state() == states
    assert "h1" not in [h.article.id for h in reopened.articles.search("bank interest rates", k=5)]
    reopened.close()


def test_changed_text_in_database_replaces_vector(settings, embedder, headline_drafts):
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts)
    service.articles.save_index()
    h2 = headline_drafts[1]
    h2.title, h2.body = "Volcano eruption forces evacuation", "Lava reached the village."
    service.articles.ingest([h2])  # not saved: the snapshot holds the old vector of h2
    service.storage.close()

    reopened = NewsroomService.from_settings(settings, embedder=embedder)
    key = reopened.storage.get_article("h2").key
    stored = reopened.storage.embedding_of("h2")[1]
    np.testing.assert_allclose(reopened.articles.index.vector(key), stored, atol=1e-6)
    assert reopened.articles.search("volcano lava", k=1)[0].article.id == "h2"
    reopened.close()


def test_rebuild_builds_the_final_kind_once(tmp_path, monkeypatch):
    from core.domain import ArticleDraft
    from core.storage import ArticleWrite, Storage
    from retrieval.index import ArticleIndex, IndexConfig
    from retrieval.sync import rebuild_index

    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    drafts = [ArticleDraft(id=f"a{i}", title=f"T{i}") for i in range(300)]
    storage.write_articles(
        [ArticleWrite(d, d.id, d.content_hash(), v) for d, v in zip(drafts, vectors, strict=True)],
        "m",
    )
    stream = storage.embeddings
    monkeypatch.setattr(storage, "embeddings", lambda: stream(batch=40))  # small reads

    def no_compaction(self):
        raise AssertionError("a rebuild must not compact (flat <-> HNSW flip-flop)")

    monkeypatch.setattr(ArticleIndex, "_compact", no_compaction)
    index = rebuild_index(storage, 8, IndexConfig(hnsw_threshold=100))
    assert index.kind == "hnsw" and len(index) == 300
    assert index.state() == {s.key: s.content_hash for s in storage.stored_states()}
