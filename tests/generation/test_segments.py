from __future__ import annotations

from pathlib import Path

import numpy as np

from generation.segments import InterestSegments


def test_segments_separate_clear_interest_groups_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sport, business = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    vectors = np.stack(
        [sport + 0.05 * rng.standard_normal(8) for _ in range(20)]
        + [business + 0.05 * rng.standard_normal(8) for _ in range(20)]
    ).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = [{"sport": 1.0}] * 20 + [{"business": 1.0, "tech": 0.2}] * 20
    segments = InterestSegments.fit(vectors, categories, k=2)
    s, b = segments.assign(sport), segments.assign(business)
    assert s != b
    assert segments.labels[s] == ["sport"] and segments.labels[b] == ["business", "tech"]
    segments.save(tmp_path)
    loaded = InterestSegments.load(tmp_path)
    assert loaded is not None and loaded.assign(sport) == s and loaded.n_users == 40
    assert InterestSegments.load(tmp_path / "missing") is None
