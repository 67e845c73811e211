"""The semantic check: facts must stand together in one source sentence."""

from __future__ import annotations

from generation.citations import SentenceChecker, split_sources
from generation.guard import SourceFacts

TITLE = "Ad sales boost Time Warner profit"
BODY = (
    "Quarterly profits at US media giant Time Warner jumped 76% to $1.13bn for the three months "
    "to December. Its film division saw profits slump 27% as Warner Bros struggled. Google said "
    "its own profits rose 12%."
)


def _checker() -> SentenceChecker:
    return SentenceChecker(split_sources([("a1", TITLE, BODY)]), SourceFacts([TITLE, BODY]))


def test_a_true_sentence_passes_and_is_cited_to_its_source_sentence() -> None:
    verdict = _checker().check("Time Warner profits jumped 76% in the three months to December.")
    assert verdict.supported and not verdict.unsupported
    assert verdict.citations[0].sentence.startswith("Quarterly profits at US media giant")


def test_a_number_moved_to_another_subject_fails_though_every_word_is_in_the_sources() -> None:
    checker = _checker()
    moved = "Google profits jumped 76%."
    assert checker.facts.check(moved).grounded  # the lexical guard lets it through
    verdict = checker.check(moved)
    assert not verdict.supported and ("76", "google") in checker.pairs(moved)


def test_swapped_subjects_fail() -> None:
    verdict = _checker().check("Google said Warner Bros struggled.")
    assert not verdict.supported


def test_a_near_copy_is_flagged_verbatim() -> None:
    verdict = _checker().check("Google said its own profits rose 12%.")
    assert verdict.supported and verdict.verbatim
    paraphrase = _checker().check("Profits at Google rose 12%, the company said.")
    assert paraphrase.supported and not paraphrase.verbatim
