"""Each reader on the real files in ../shared/data."""

from __future__ import annotations

from collections import Counter

import pytest

from core.datasets import (
    read_articles,
    read_bbc_summaries,
    read_mind_behaviors,
    read_xsum_rows,
)
from tests.conftest import data_path


def test_bbc_reader_reads_every_article_with_its_category():
    drafts = list(read_articles(data_path("bbc_news_summary"), "bbc"))
    assert len(drafts) == 1773
    assert Counter(d.category for d in drafts).keys() == {
        "business",
        "entertainment",
        "politics",
        "sport",
        "tech",
    }
    assert all(d.title and d.body for d in drafts)
    # sport/199.txt holds a Latin-1 pound sign: decoded, not dropped
    sport_199 = next(d for d in drafts if d.id == "bbc-sport-199")
    assert "£" in sport_199.title + sport_199.body
    summaries = read_bbc_summaries(data_path("bbc_news_summary"))
    assert len(summaries) == 1773 and ". " in summaries["bbc-tech-001"]


@pytest.mark.parametrize(
    ("folder", "count"),
    [
        ("mind_demo_news", 1000),
        ("mind_small_dev_impressions", 6334),
        ("mind_small_train_sample", 2000),
    ],
)
def test_mind_reader_handles_both_layouts(folder, count):
    drafts = list(read_articles(data_path(folder), "mind"))
    assert len(drafts) == count
    assert all(d.id and d.id.startswith("N") for d in drafts)
    assert all(d.category for d in drafts)
    # zero-width spaces in MIND titles are removed
    assert not any("\u200b" in d.title for d in drafts)


def test_mind_behaviors_reader():
    rows = list(read_mind_behaviors(data_path("mind_small_train_sample")))
    assert len(rows) == 5000
    first = rows[0]
    assert first.user_id.startswith("U") and first.history and first.impressions
    assert {label for _, label in first.impressions} <= {0, 1}


def test_agnews_reader_unescapes_text():
    drafts = list(read_articles(data_path("ag_news_test"), "agnews"))
    assert len(drafts) == 7600
    assert set(Counter(d.category for d in drafts)) == {"World", "Sports", "Business", "Sci/Tech"}
    assert not any(" #39;" in d.title or " #39;" in d.body for d in drafts)
    assert not any("\\" in d.body for d in drafts)


def test_xsum_reader_skips_empty_documents_and_fixes_pound_sign():
    rows = list(read_xsum_rows(data_path("xsum_sample")))
    assert len(rows) == 690
    assert all(r.document and r.summary for r in rows)
    assert not any("Â£" in r.document for r in rows)
    drafts = list(read_articles(data_path("xsum_sample"), "xsum"))
    assert len(drafts) == 690 and all(d.id.startswith("xsum-") for d in drafts)


def test_jsonl_reader_and_unknown_format(tmp_path):
    file = tmp_path / "a.jsonl"
    file.write_text(
        '{"id": "x1", "title": "Hello", "body": "World", "published_at": "2024-01-02T03:04:05"}\n'
        "\n"
        '{"title": "No id"}\n'
    )
    drafts = list(read_articles(file, "jsonl"))
    assert [d.id for d in drafts] == ["x1", None]
    assert drafts[0].published_at.year == 2024
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no title"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        list(read_articles(bad, "jsonl"))
    with pytest.raises(ValueError, match="unknown format"):
        read_articles(file, "csv")
