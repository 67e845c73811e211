from __future__ import annotations

from datetime import UTC, datetime

from retrieval.catalog import ArticleCatalog


def _catalog() -> ArticleCatalog:
    catalog = ArticleCatalog()
    catalog.upsert(
        [
            (1, "a", "A", "sport", datetime(2024, 1, 1, tzinfo=UTC)),
            (2, "b", "B", "tech", datetime(2024, 1, 3, tzinfo=UTC)),
            (3, "c", "C", "sport", None),
            (4, "d", "D", "sport", datetime(2024, 1, 2, tzinfo=UTC)),
        ]
    )
    return catalog


def test_filters_and_lookups():
    catalog = _catalog()
    assert sorted(catalog.keys_matching("sport", None).tolist()) == [1, 3, 4]
    since = datetime(2024, 1, 2, tzinfo=UTC)
    assert sorted(catalog.keys_matching(None, since).tolist()) == [2, 4]
    assert catalog.keys_matching("sport", since).tolist() == [4]
    assert catalog.key_of("c") == 3 and catalog.get(3).title == "C"


def test_newest_orders_by_publication_then_arrival_and_follows_updates():
    catalog = _catalog()
    assert catalog.newest(3) == [2, 4, 1]
    assert catalog.newest(2, "sport") == [4, 1]
    catalog.upsert([(1, "a", "A", "tech", datetime(2024, 1, 9, tzinfo=UTC))])  # moved + newer
    assert catalog.newest(1) == [1]
    assert sorted(catalog.keys_in_category("sport").tolist()) == [3, 4]
    catalog.remove(1)
    assert catalog.key_of("a") is None and 1 not in catalog.newest(10)
    assert len(catalog) == 3
