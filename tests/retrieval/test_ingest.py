from __future__ import annotations

import pytest

from core.domain import ArticleDraft
from core.errors import InvalidInput, LimitExceeded


def test_upsert_skips_unchanged_text_and_reembeds_changed(service, headline_drafts, monkeypatch):
    first = service.articles.ingest(headline_drafts)
    assert len(first.created) == 6 and first.embedded == 6

    calls: list[int] = []
    encode = service.articles.embedder.encode

    def counting(texts, progress=False):
        calls.append(len(texts))
        return encode(texts, progress)

    monkeypatch.setattr(service.articles.embedder, "encode", counting)
    headline_drafts[0].category = "markets"  # metadata only
    headline_drafts[1].body = "A late penalty decided the derby."  # text changed
    second = service.articles.ingest(headline_drafts)
    assert second.unchanged == ["h1", "h3", "h4", "h5", "h6"]
    assert second.updated == ["h2"] and second.embedded == 1
    assert calls == [1]
    assert service.articles.get_article("h1").category == "markets"
    assert len(service.articles.index) == 6


def test_generated_ids_are_stable_and_text_is_cleaned(service):
    draft = ArticleDraft(title="Zero\u200bwidth   title\x07", body="Body")
    report = service.articles.ingest([draft])
    again = service.articles.ingest(
        [ArticleDraft(title="Zero\u200bwidth   title\x07", body="Body")]
    )
    assert report.created == again.unchanged
    article = service.articles.get_article(report.created[0])
    assert article.title == "Zerowidth title"


def test_limits_and_empty_title(service):
    with pytest.raises(InvalidInput, match="title"):
        service.articles.ingest([ArticleDraft(title=" \u200b ")])
    with pytest.raises(InvalidInput) as err:
        service.articles.ingest([ArticleDraft(title="t", body="x" * 300_000)])
    assert err.value.field == "body"
    with pytest.raises(LimitExceeded):
        service.articles.ingest(
            [ArticleDraft(title=f"t{i}") for i in range(service.articles.max_bulk + 1)]
        )
