"""Supervised examples for the generation tasks, and the train/validation split they share.

The split is a hash of the normalised article text, so duplicate articles (BBC has ~98) land
on the same side and `eval-generation` scores only texts the adapter never trained on. All three
tasks built from BBC split by the same article body, so an article the draft adapter trained on
is never a held-out article for the headline adapter's evaluation either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.datasets import read_bbc, read_bbc_summaries, read_xsum_rows
from core.domain import ArticleDraft

Task = Literal["headline", "summary", "draft"]
DataFormat = Literal["bbc", "xsum"]
Split = Literal["train", "val", "all"]

# The draft task (see `draft_examples`): how much of an article becomes the target.
DRAFT_LEAD_SENTENCES = 8  # target sentences are taken from the article's opening
DRAFT_MIN_TARGET, DRAFT_MAX_TARGET = 3, 5  # sentences per target
DRAFT_NOTES_WORDS = 230  # the article's remaining sentences, as the main source
DRAFT_RELATED_SENTENCES = 2  # the lead of the nearest other article, as a second source


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    source: str
    target: str
    # The draft task's structured prompt (empty for headline/summary, whose prompt is `source`).
    brief: str = ""
    sources: tuple[tuple[str, str], ...] = ()  # (source id, text)
    audience: str = ""
    # What the train/validation split hashes: the article body, shared across tasks.
    split_key: str = ""


def load_examples(task: Task, path: Path, fmt: DataFormat) -> list[Example]:
    """BBC gives headline (title), extractive-summary and draft targets; XSum gives
    one-sentence summaries (it has no headlines)."""
    if fmt == "xsum":
        if task != "summary":
            raise ValueError(f"XSum has no {task}s: use --format bbc for --task {task}")
        return [Example(r.id, r.document, r.summary) for r in read_xsum_rows(path) if r.summary]
    articles = [a for a in read_bbc(path) if a.body]
    if task == "headline":
        return [Example(a.id or "", a.body, a.title) for a in articles]
    if task == "draft":
        return draft_examples(articles)
    summaries = read_bbc_summaries(path)
    return [
        Example(a.id or "", a.body, summaries[a.id or ""]) for a in articles if a.id in summaries
    ]


def draft_examples(articles: list[ArticleDraft]) -> list[Example]:
    """The draft task from real articles: brief = the headline; sources = the article's own
    other sentences (the reporter's notes) and the lead of the most similar other article
    (related coverage, relevant or not); target = 3-5 sentences from the article's opening
    that the sources support (every number and name in them occurs in the sources).

    The target sentences are taken *out* of the sources, so the model cannot learn to copy:
    it learns to write an opening from facts stated elsewhere, and to leave out what it cannot
    support (opening sentences whose facts the rest of the article does not repeat are dropped
    from the target, not invented by it)."""
    from generation.guard import SourceFacts, sentences

    split_articles = [(a, sentences(a.body)) for a in articles]
    related = _nearest_other([f"{a.title}. {a.body[:600]}" for a, _ in split_articles])
    examples: list[Example] = []
    for n, (article, found) in enumerate(split_articles):
        if len(found) < DRAFT_LEAD_SENTENCES:
            continue
        other, other_sentences = split_articles[related[n]]
        related_text = " ".join([other.title + ".", *other_sentences[:DRAFT_RELATED_SENTENCES]])
        chosen: list[int] = []
        for i in range(DRAFT_LEAD_SENTENCES):
            notes = _notes([s for j, s in enumerate(found) if j != i and j not in chosen])
            if SourceFacts([article.title, notes, related_text]).check(found[i]).grounded:
                chosen.append(i)
            if len(chosen) == DRAFT_MAX_TARGET:
                break
        notes = _notes([s for j, s in enumerate(found) if j not in chosen])
        facts = SourceFacts([article.title, notes, related_text])
        chosen = [i for i in chosen if facts.check(found[i]).grounded]
        if len(chosen) < DRAFT_MIN_TARGET:
            continue
        own = (article.id or "", notes)
        near = (other.id or "", related_text)
        # Which slot holds the article's own notes varies, so position carries no signal.
        order = (own, near) if _bucket(article.body) < 0.5 else (near, own)
        audience = (
            f"readers interested in {article.category}"
            if article.category and _bucket(article.title) < 0.5
            else "a general audience"
        )
        examples.append(
            Example(
                id=article.id or "",
                source="\n".join(text for _, text in order),
                target=" ".join(found[i] for i in chosen),
                brief=article.title,
                sources=order,
                audience=audience,
                split_key=article.body,
            )
        )
    return examples


def _notes(kept: list[str]) -> str:
    words: list[str] = []
    for sentence in kept:
        if len(words) >= DRAFT_NOTES_WORDS:
            break
        words.extend(sentence.split())
    return " ".join(words)


def _nearest_other(texts: list[str]) -> list[int]:
    """For each text, the index of the most similar other one (TF-IDF cosine): cheap, no
    model, deterministic."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts)
    nearest: list[int] = []
    for start in range(0, matrix.shape[0], 256):
        sims = (matrix[start : start + 256] @ matrix.T).toarray()  # (b, n)
        for row in range(sims.shape[0]):
            sims[row, start + row] = -1.0
            # A duplicate article (BBC has ~98) is not "related coverage": skip near-copies.
            sims[row, sims[row] > 0.9] = -1.0
        nearest.extend(np.argmax(sims, axis=1).tolist())
    return nearest


def _bucket(text: str) -> float:
    key = " ".join(text.lower().split()).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32


def split_of(example: Example, val_fraction: float) -> Literal["train", "val"]:
    return "val" if _bucket(example.split_key or example.source) < val_fraction else "train"


def select_split(examples: list[Example], split: Split, val_fraction: float) -> list[Example]:
    if split == "all":
        return list(examples)
    return [e for e in examples if split_of(e, val_fraction) == split]
