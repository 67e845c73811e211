"""FAISS index against a numpy brute-force oracle; updates, removals, filters, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.index import ArticleIndex, IndexConfig, SnapshotError, check_vectors

DIM = 32


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _oracle(vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    return keys[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


def _hashes(keys: np.ndarray) -> list[str]:
    return [f"h{k}" for k in keys.tolist()]


def test_flat_search_matches_bruteforce_oracle():
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng, 500), _unit(rng, 20)
    keys = rng.permutation(10_000)[:500].astype(np.int64)
    index = ArticleIndex.build(keys, vectors, _hashes(keys), DIM)
    assert index.kind == "flat"
    scores, found = index.search(queries, 10)
    np.testing.assert_array_equal(found, _oracle(vectors, keys, queries, 10))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_hnsw_recall_against_oracle():
    rng = np.random.default_rng(1)
    vectors, queries = _unit(rng, 3000), _unit(rng, 50)
    keys = np.arange(3000, dtype=np.int64) + 7
    index = ArticleIndex.build(keys, vectors, _hashes(keys), DIM, IndexConfig(hnsw_threshold=1000))
    assert index.kind == "hnsw"
    _, found = index.search(queries, 10)
    truth = _oracle(vectors, keys, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.9


@pytest.mark.parametrize("threshold", [10_000, 100])
def test_update_remove_filters_on_both_kinds(threshold):
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 300)
    keys = np.arange(300, dtype=np.int64)
    index = ArticleIndex.build(
        keys, vectors, _hashes(keys), DIM, IndexConfig(hnsw_threshold=threshold)
    )
    # update key 5 to point exactly at a query; it must come first
    query = _unit(rng, 1)
    index.add(np.array([5]), query, ["new"])
    assert len(index) == 300
    _, found = index.search(query, 3)
    assert found[0, 0] == 5
    assert index.state()[5] == "new"
    # remove it: gone from results, other results intact
    assert index.remove(np.array([5, 999])) == 1
    _, found = index.search(query, 3)
    assert 5 not in found[0]
    assert len(index) == 299
    # allowed subset: exact over the subset
    allowed = np.array([10, 20, 30], dtype=np.int64)
    scores, found = index.search(query, 5, allowed_keys=allowed)
    assert set(found[0, :3].tolist()) == {10, 20, 30}
    assert found[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()
    # exclusion
    _, top = index.search(vectors[[7]], 1)
    _, excluded = index.search(vectors[[7]], 1, exclude_keys=np.array([7]))
    assert top[0, 0] == 7 and excluded[0, 0] != 7


def test_compaction_keeps_results_and_switches_kind():
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 400)
    keys = np.arange(400, dtype=np.int64)
    index = ArticleIndex.build(keys, vectors, _hashes(keys), DIM, IndexConfig(hnsw_threshold=300))
    assert index.kind == "hnsw"
    index.remove(keys[:250])  # below half the threshold: compacts back to flat
    assert index.kind == "flat" and len(index) == 150
    queries = _unit(rng, 5)
    _, found = index.search(queries, 5)
    np.testing.assert_array_equal(found, _oracle(vectors[250:], keys[250:], queries, 5))


def test_snapshot_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 50)
    keys = np.arange(50, dtype=np.int64)
    index = ArticleIndex.build(keys, vectors, _hashes(keys), DIM)
    index.remove(np.array([3]))
    path = tmp_path / "index.snapshot"
    index.save(path, "m1")
    loaded = ArticleIndex.load(path, "m1")
    assert loaded.state() == index.state()
    queries = _unit(rng, 4)
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])
    with pytest.raises(SnapshotError, match="another model"):
        ArticleIndex.load(path, "m2")
    path.write_bytes(path.read_bytes()[:100])  # torn write
    with pytest.raises(SnapshotError):
        ArticleIndex.load(path, "m1")
    with pytest.raises(SnapshotError):
        ArticleIndex.load(tmp_path / "missing", "m1")


def test_vectors_are_checked_at_the_boundary():
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        check_vectors(np.zeros((2, 16), np.float32), DIM)
    with pytest.raises(TypeError):
        check_vectors(np.zeros((2, DIM), np.int64), DIM)
    with pytest.raises(ValueError, match="NaN"):
        check_vectors(np.full((1, DIM), np.nan, np.float32), DIM)
    index = ArticleIndex(DIM)
    with pytest.raises(ValueError, match="same length"):
        index.add(np.array([1, 2]), np.zeros((1, DIM), np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        index.add(np.array([1, 1]), np.zeros((2, DIM), np.float32), ["a", "b"])
    _, keys = index.search(np.zeros((1, DIM), np.float32), 3)
    assert keys.tolist() == [[-1, -1, -1]]


def test_filtered_search_over_a_wide_subset_is_exact():
    rng = np.random.default_rng(5)
    vectors, queries = _unit(rng, 3000), _unit(rng, 20)
    keys = np.arange(3000, dtype=np.int64) * 3
    config = IndexConfig(hnsw_threshold=1000, exact_subset_max=100)
    index = ArticleIndex.build(keys, vectors, _hashes(keys), DIM, config)
    allowed = keys[rng.random(3000) < 0.4]  # 40%: above exact_subset_max, the selector scan
    _, found = index.search(queries, 10, allowed_keys=allowed)
    mask = np.isin(keys, allowed)
    np.testing.assert_array_equal(found, _oracle(vectors[mask], keys[mask], queries, 10))


def test_explicit_kind_is_kept():
    rng = np.random.default_rng(6)
    vectors = _unit(rng, 300)
    keys = np.arange(300, dtype=np.int64)
    reference = ArticleIndex.build(
        keys, vectors, _hashes(keys), DIM, IndexConfig(hnsw_threshold=100), kind="flat"
    )
    assert reference.kind == "flat"
    reference.remove(keys[:10])
    assert reference.kind == "flat"
