"""Sentence by sentence: which source sentence supports a written sentence, and does it?

The lexical guard (`generation.guard`) asks whether every number and name of an output occurs
*somewhere* in the sources; it misses a true number attached to the wrong subject ("Yahoo's
profits rose 76%" when the 76% was Time Warner's). The semantic check here asks more of each
sentence: its facts must stand *together* in one source sentence.

- A sentence's claims are its numbers and names (the guard's own extraction). Each number is
  paired with the name nearest to it in the sentence, and each name with the next name; a pair
  is supported when one source sentence holds both (numbers by value, names with plain
  inflections, as the guard matches them).
- A sentence is cited to the source sentences that hold its pairs, else to the ones closest in
  meaning (MiniLM cosine) that share its content words.

No entailment model ships in a registry package that runs here, so this is a co-occurrence
check, measured on a labelled set of corrupted sentences (`newsroom eval-checker`).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from generation.guard import (
    _NUMBER,
    FUNCTION_WORDS,
    NUMBER_WORDS,
    SourceFacts,
    _inflections,
    _normalise_number,
    _strip_possessive,
    common_words,
    sentences,
)

# Where a clause ends: a number belongs to a name of its own clause ("Time Warner rose 76%,
# its film division fell 27%": the 27% is not Time Warner's).
_CLAUSE = re.compile(r"[,;:()]|\s(?:and|but|while|whereas|as|after|before|which|who)\s")
_TOKEN = re.compile(r"[^\W_][\w'\u2019\-]*|\d+(?:[.,]\d+)*")
STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "in",
        "on",
        "at",
        "by",
        "to",
        "from",
        "with",
        "for",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "we",
        "you",
        "his",
        "her",
        "their",
        "our",
        "said",
        "says",
        "will",
        "would",
        "could",
        "should",
        "may",
        "might",
        "can",
        "also",
        "after",
        "before",
        "over",
        "under",
        "about",
        "into",
        "than",
        "then",
        "there",
        "here",
        "not",
        "no",
        "new",
        "more",
        "most",
    ]
)
# A written sentence this close to one source sentence copies it (difflib ratio on words).
VERBATIM_RATIO = 0.8


@dataclass(frozen=True, slots=True)
class SourceSentence:
    article_id: str
    index: int  # position in the article (-1: its title)
    text: str
    start: int  # character offsets in the article's text (title + body as served)
    end: int


@dataclass(frozen=True, slots=True)
class Citation:
    article_id: str
    sentence: str
    start: int
    end: int
    similarity: float

    def as_dict(self) -> dict[str, object]:
        return {
            "article_id": self.article_id,
            "sentence": self.sentence,
            "start": self.start,
            "end": self.end,
            "similarity": round(self.similarity, 3),
        }


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    """The verdict on one written sentence."""

    supported: bool
    unsupported: tuple[str, ...]  # what failed: a missing fact, or an unpaired "a + b"
    citations: tuple[Citation, ...]
    verbatim: bool  # copies one source sentence nearly word for word
    reasons: tuple[str, ...] = field(default=())


def split_sources(articles: Sequence[tuple[str, str, str]]) -> list[SourceSentence]:
    """(article id, title, body) -> the articles' sentences with offsets into `title. body`."""
    found: list[SourceSentence] = []
    for article_id, title, body in articles:
        found.append(SourceSentence(article_id, -1, title, 0, len(title)))
        offset = len(title) + 2  # "title. body" as the draft prompt shows it
        cursor = 0
        for index, sentence in enumerate(sentences(body)):
            at = body.find(sentence, cursor)
            at = cursor if at < 0 else at
            found.append(
                SourceSentence(
                    article_id, index, sentence, offset + at, offset + at + len(sentence)
                )
            )
            cursor = at + len(sentence)
    return found


def _words(text: str) -> list[str]:
    return [w.lower() for w in _TOKEN.findall(text)]


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if w not in STOP and len(w) > 2}


class SentenceChecker:
    """Checks and cites written sentences against one set of sources."""

    def __init__(
        self,
        sources: Sequence[SourceSentence],
        facts: SourceFacts,
        encode: Callable[[list[str]], np.ndarray] | None = None,
        min_similarity: float = 0.35,
        max_citations: int = 2,
    ) -> None:
        self.sources = list(sources)
        self.facts = facts
        self.encode = encode
        self.min_similarity = min_similarity
        self.max_citations = max_citations
        self._forms = [self._sentence_forms(s.text) for s in self.sources]
        self._capitalised = {
            _strip_possessive(w).lower()
            for source in self.sources
            for w in re.findall(r"[^\W\d_][\w'\u2019\-]*", source.text)
            if w[0].isupper()
        } - self.facts.words_lower_case
        self._content = [_content(s.text) for s in self.sources]
        self._vectors = (
            encode([s.text for s in self.sources]) if encode is not None and self.sources else None
        )

    # --- facts ---------------------------------------------------------------------------------
    @staticmethod
    def _sentence_forms(text: str) -> set[str]:
        """Every number (by value) and word (lower case, with its plain inflections) of `text`."""
        forms = {_normalise_number(n) for n in _NUMBER.findall(text)}
        for raw in re.findall(r"[^\W\d_][\w'\u2019\-]*", text):
            word = _strip_possessive(raw).lower()
            for part in (word, *word.split("-")):
                if part:
                    forms |= _inflections(part)
                    if part in NUMBER_WORDS:
                        forms.add(NUMBER_WORDS[part])
        return forms

    def claims(self, text: str) -> list[tuple[str, int, int]]:
        """The sentence's numbers and names as (claim, word position, clause), in order.

        Names are capitalised words other than function words and words the sources use in
        lower case; a sentence's first word counts when the sources write it capitalised only
        (so "Google said…" is a name, "Profits rose…" is not)."""
        numbers = set(self.facts.claims(text).numbers)
        boundaries = [m.start() for m in _CLAUSE.finditer(text)]
        found: list[tuple[str, int, int]] = []
        for position, match in enumerate(_TOKEN.finditer(text)):
            raw = match.group(0)
            clause = sum(1 for b in boundaries if b < match.start())
            if raw[0].isdigit():
                value = _normalise_number(raw)
                if value in numbers:
                    found.append((value, position, clause))
                continue
            word = _strip_possessive(raw)
            lower = word.lower()
            if lower in NUMBER_WORDS and NUMBER_WORDS[lower] in numbers:
                found.append((NUMBER_WORDS[lower], position, clause))
                continue
            if not word[:1].isupper() or lower in FUNCTION_WORDS:
                continue
            if _inflections(lower) & self.facts.words_lower_case:
                continue
            if position == 0 and lower in common_words() and lower not in self._capitalised:
                continue
            found.append((lower, position, clause))
        return found

    def pairs(self, text: str) -> list[tuple[str, str]]:
        """The facts that must stand together: each number with the nearest name in its clause,
        each name with the next name."""
        claims = self.claims(text)
        names = [(c, p, k) for c, p, k in claims if not c[0].isdigit()]
        found: list[tuple[str, str]] = []
        for number, at, clause in ((c, p, k) for c, p, k in claims if c[0].isdigit()):
            near = [n for n in names if n[2] == clause]
            if near:
                found.append((number, min(near, key=lambda n: abs(n[1] - at))[0]))
        for (first, _, _), (second, _, _) in itertools.pairwise(names):
            if first != second:
                found.append((first, second))
        return list(dict.fromkeys(found))

    def _holds(self, index: int, claim: str) -> bool:
        forms = self._forms[index]
        if claim[0].isdigit():
            return claim in forms
        return all(bool(_inflections(part) & forms) for part in claim.split("-") if part)

    # --- the verdict ---------------------------------------------------------------------------
    def check(self, text: str) -> SentenceCheck:
        lexical = self.facts.check(text)
        unsupported = list(lexical.unsupported)
        reasons = [f"not in the sources: {', '.join(unsupported)}"] if unsupported else []
        pairs = self.pairs(text)
        holding: list[int] = []
        for first, second in pairs:
            together = [
                i
                for i in range(len(self.sources))
                if self._holds(i, first) and self._holds(i, second)
            ]
            if together:
                holding += together
            else:
                unsupported.append(f"{first} + {second}")
                reasons.append(f"no source sentence says {first!r} with {second!r}")
        citations = self._cite(text, holding)
        if not citations and not unsupported:
            unsupported.append("(no supporting sentence)")
            reasons.append("no source sentence says anything close to it")
        verbatim = any(
            difflib.SequenceMatcher(None, _words(text), _words(c.sentence)).ratio()
            >= VERBATIM_RATIO
            for c in citations
        )
        return SentenceCheck(
            not unsupported, tuple(unsupported), tuple(citations), verbatim, tuple(reasons)
        )

    def _cite(self, text: str, holding: list[int]) -> list[Citation]:
        if not self.sources:
            return []
        words = _content(text)
        overlap = np.array([len(words & c) / max(1, len(words)) for c in self._content])
        if self._vectors is not None and self.encode is not None:
            similarity = self._vectors @ self.encode([text])[0]  # (S,)
        else:
            similarity = overlap
        # Sentences that hold the pairs first, then the closest in meaning that share words.
        ranked = sorted(
            range(len(self.sources)),
            key=lambda i: (i in holding, float(similarity[i])),
            reverse=True,
        )
        chosen: list[Citation] = []
        for i in ranked:
            close = similarity[i] >= self.min_similarity and overlap[i] > 0
            if i in holding or close:
                source = self.sources[i]
                chosen.append(
                    Citation(
                        source.article_id,
                        source.text,
                        source.start,
                        source.end,
                        float(similarity[i]),
                    )
                )
            if len(chosen) == self.max_citations:
                break
        return chosen

    def best_extract(self, text: str, used: set[str]) -> SourceSentence | None:
        """The source sentence closest to `text` not used yet (titles only if nothing else)."""
        if not self.sources:
            return None
        if self._vectors is not None and self.encode is not None:
            similarity = self._vectors @ self.encode([text])[0]
        else:
            words = _content(text)
            similarity = np.array([len(words & c) for c in self._content], dtype=np.float32)
        for i in np.argsort(-similarity).tolist():
            source = self.sources[i]
            if source.text not in used and source.index >= 0:
                return source
        return None
