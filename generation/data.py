"""Supervised examples for the generation tasks, and the train/validation split they share.

The split is a hash of the normalised source text, so duplicate articles (BBC has ~98) land
on the same side and `eval-generation` scores only texts the adapter never trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.datasets import read_bbc, read_bbc_summaries, read_xsum_rows

Task = Literal["headline", "summary"]
DataFormat = Literal["bbc", "xsum"]
Split = Literal["train", "val", "all"]


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    source: str
    target: str


def load_examples(task: Task, path: Path, fmt: DataFormat) -> list[Example]:
    """BBC gives headline (title) and extractive-summary targets; XSum gives one-sentence
    summaries (it has no headlines)."""
    if fmt == "xsum":
        if task == "headline":
            raise ValueError("XSum has no headlines: use --format bbc for --task headline")
        return [Example(r.id, r.document, r.summary) for r in read_xsum_rows(path) if r.summary]
    articles = list(read_bbc(path))
    if task == "headline":
        return [Example(a.id or "", a.body, a.title) for a in articles if a.body]
    summaries = read_bbc_summaries(path)
    return [
        Example(a.id or "", a.body, summaries[a.id or ""])
        for a in articles
        if a.body and a.id in summaries
    ]


def split_of(example: Example, val_fraction: float) -> Literal["train", "val"]:
    key = " ".join(example.source.lower().split()).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
    return "val" if bucket < val_fraction else "train"


def select_split(examples: list[Example], split: Split, val_fraction: float) -> list[Example]:
    if split == "all":
        return list(examples)
    return [e for e in examples if split_of(e, val_fraction) == split]
