"""Interest segments: k-means clusters of user profile vectors.

Personalized outputs are cached per (article, segment) rather than per user, so one generation
serves every reader of a segment. A segment's centroid picks the article passages it cares
about; its label (the categories its members read most) goes into the prompt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class InterestSegments:
    centroids: np.ndarray  # (k, d), L2-normalised
    labels: list[list[str]]  # per segment: top categories of its members
    n_users: int

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        categories: list[dict[str, float]],
        k: int,
        seed: int = 0,
    ) -> InterestSegments:
        """vectors (n, d) of users; categories[i]: user i's category weights."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            raise ValueError("no user profiles to segment: record some events first")
        k = max(1, min(k, len(vectors)))
        kmeans = faiss.Kmeans(vectors.shape[1], k, niter=25, seed=seed, spherical=True)
        kmeans.train(vectors)
        centroids = kmeans.centroids / np.linalg.norm(kmeans.centroids, axis=1, keepdims=True)
        assignment = np.argmax(vectors @ centroids.T, axis=1)
        labels: list[list[str]] = []
        for segment in range(k):
            totals: dict[str, float] = {}
            for index in np.flatnonzero(assignment == segment):
                for name, weight in categories[index].items():
                    totals[name] = totals.get(name, 0.0) + weight
            labels.append([n for n, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:3]])
        return cls(centroids.astype(np.float32), labels, len(vectors))

    def assign(self, vector: np.ndarray) -> int:
        return int(np.argmax(self.centroids @ vector.astype(np.float32)))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / "centroids.npy.tmp"
        with open(staging, "wb") as handle:
            np.save(handle, self.centroids)
        os.replace(staging, directory / "centroids.npy")
        (directory / "config.json").write_text(
            json.dumps({"k": len(self.centroids), "labels": self.labels, "n_users": self.n_users})
        )

    @classmethod
    def load(cls, directory: Path) -> InterestSegments | None:
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            return None
        config = json.loads((directory / "config.json").read_text())
        return cls(np.load(directory / "centroids.npy"), config["labels"], config["n_users"])


class SegmentsFile:
    """The segments saved in `directory`, re-read when they are refitted (checked at most
    every `check_s` seconds, so a caller may ask per request)."""

    def __init__(self, directory: Path, check_s: float = 30.0) -> None:
        self.directory = Path(directory)
        self.check_s = check_s
        self._loaded: tuple[float, InterestSegments | None] = (-1.0, None)
        self._checked = float("-inf")

    def __call__(self) -> InterestSegments | None:
        import time

        now = time.monotonic()
        if now - self._checked < self.check_s:
            return self._loaded[1]
        self._checked = now
        try:
            mtime = (self.directory / "config.json").stat().st_mtime
        except OSError:
            self._loaded = (-1.0, None)
            return None
        if mtime != self._loaded[0]:
            self._loaded = (mtime, InterestSegments.load(self.directory))
        return self._loaded[1]

    def names(self) -> list[str]:
        segments = self()
        return [] if segments is None else [f"segment-{i}" for i in range(len(segments.centroids))]
