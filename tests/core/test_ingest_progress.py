"""Offline ingest reports every small batch (a progress bar that moves), in length order, and
loses nothing between batches."""

from __future__ import annotations

from core.domain import ArticleDraft
from core.service import NewsroomService


def test_ingest_stream_reports_per_small_batch(service: NewsroomService) -> None:
    drafts = [
        ArticleDraft(id=f"p{n}", title=f"Story {n}", body="word " * (n % 40 + 1))
        for n in range(150)
    ]
    reports = list(service.articles.ingest_stream(drafts))
    assert [len(r.ids) for r in reports] == [64, 64, 22]
    assert sum(r.embedded for r in reports) == 150
    assert len(service.articles.index) == 150
