"""Faithfulness guard: every number and named entity in an output must occur in its sources.

Deliberately lexical and strict. A number counts as supported when the same value appears in
the sources (as digits, with or without thousands separators, or as a number word up to
twenty); a capitalised word counts as an entity unless it is a function word or the sources
use it as an ordinary lower-case word, and it is supported when the sources contain it in any
case. A paraphrase with a new name or figure fails, which is the point: a newsroom would rather
fall back to an extract than publish a wrong number.

`evaluation.generation` uses the same checker for `unsupported_rate`, so the metric measures
what the guard enforces; the README says so.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_][\w'\u2019\-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
NUMBER_WORDS.update(thirty="30", forty="40", fifty="50", hundred="100", thousand="1000")

# Capitalised at the start of a sentence or in title case, these are not names.
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "yet",
        "for",
        "of",
        "in",
        "on",
        "at",
        "by",
        "to",
        "from",
        "with",
        "without",
        "into",
        "onto",
        "over",
        "under",
        "after",
        "before",
        "about",
        "above",
        "below",
        "between",
        "among",
        "against",
        "during",
        "since",
        "until",
        "while",
        "as",
        "if",
        "than",
        "then",
        "that",
        "this",
        "these",
        "those",
        "there",
        "here",
        "where",
        "when",
        "why",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "not",
        "no",
        "yes",
        "all",
        "any",
        "both",
        "each",
        "every",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "too",
        "very",
        "just",
        "also",
        "still",
        "even",
        "its",
        "it",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "me",
        "him",
        "her",
        "them",
        "us",
        "our",
        "your",
        "their",
        "his",
        "my",
        "mine",
        "new",
        "says",
        "said",
        "say",
        "up",
        "down",
        "out",
        "off",
        "why",
        "now",
    ]
)


@functools.cache
def common_words() -> frozenset[str]:
    """Lower-case whole words of MiniLM's 30k uncased vocabulary: ordinary English words (and
    very common first names). A sentence's first word is a name only if it is not one of these;
    mid-sentence capitals are always checked."""
    from core.settings import packaged_minilm_path

    vocab = packaged_minilm_path() / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").split("\n")
    return frozenset(w for w in words if w.isalpha() and w.islower() and len(w) > 1)


def _normalise_number(text: str) -> str:
    text = text.replace(",", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return text


def _inflections(lower: str) -> set[str]:
    """The word and its plain English inflections: 'profit' is supported by 'profits'."""
    forms = {lower, lower + "s", lower + "es", lower + "ed", lower + "d", lower + "ing"}
    for suffix in ("ies", "es", "s", "ed", "ing", "d"):
        if lower.endswith(suffix) and len(lower) - len(suffix) >= 3:
            forms.add(lower[: -len(suffix)])
    if lower.endswith("ies"):
        forms.add(lower[:-3] + "y")
    return forms


def _strip_possessive(word: str) -> str:
    word = word.replace("\u2019", "'")
    return word[:-2] if word.lower().endswith("'s") else word.rstrip("'")


@dataclass(frozen=True, slots=True)
class Claims:
    numbers: list[str]
    entities: list[str]

    def __len__(self) -> int:
        return len(self.numbers) + len(self.entities)


@dataclass(frozen=True, slots=True)
class GroundingReport:
    checked: int
    unsupported: list[str] = field(default_factory=list)

    @property
    def grounded(self) -> bool:
        return not self.unsupported

    def reason(self) -> str | None:
        if self.grounded:
            return None
        return "not in the sources: " + ", ".join(self.unsupported)


class SourceFacts:
    """What the sources support, precomputed once per set of sources."""

    def __init__(self, sources: list[str]) -> None:
        text = "\n".join(sources)
        self.numbers = {_normalise_number(n) for n in _NUMBER.findall(text)}
        words = [_strip_possessive(w) for w in _WORD.findall(text)]
        parts = [p for w in words for p in (w, *w.split("-")) if p]
        self.words_any_case = {p.lower() for p in parts}
        self.words_lower_case = {p for p in parts if p.islower()}
        for word, digits in NUMBER_WORDS.items():
            if word in self.words_any_case:
                self.numbers.add(digits)

    def claims(self, output: str) -> Claims:
        numbers = [_normalise_number(n) for n in _NUMBER.findall(output)]
        entities: list[str] = []
        ordinary = common_words()
        for sentence in sentences(output) or [output]:
            for position, raw in enumerate(_WORD.findall(sentence)):
                word = _strip_possessive(raw)
                lower = word.lower()
                if lower in NUMBER_WORDS and lower not in ("one", "zero"):  # "one of" is no count
                    numbers.append(NUMBER_WORDS[lower])
                    continue
                if not word or not word[0].isupper() or lower in FUNCTION_WORDS:
                    continue
                if _inflections(lower) & self.words_lower_case:
                    continue  # an ordinary word that happens to be capitalised here
                if position == 0 and lower in ordinary:
                    continue  # "Sluggish economy hits…": a capital because it comes first
                entities.append(word)
        return Claims(numbers, entities)

    def check(self, output: str) -> GroundingReport:
        claims = self.claims(output)
        unsupported = [n for n in claims.numbers if n not in self.numbers]
        for entity in claims.entities:
            parts = [p for p in entity.split("-") if p]
            if not all(_inflections(p.lower()) & self.words_any_case for p in parts):
                unsupported.append(entity)
        return GroundingReport(checked=len(claims), unsupported=list(dict.fromkeys(unsupported)))


def check(output: str, sources: list[str]) -> GroundingReport:
    return SourceFacts(sources).check(output)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 1]
