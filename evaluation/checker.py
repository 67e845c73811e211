"""`newsroom eval-checker`: how well do the checks tell a faithful sentence from a corrupted one?

A labelled set from real held-out BBC articles (the validation side of the fine-tuning split):
- *faithful*: an opening sentence whose numbers and names recur in the rest of the article,
  checked against the whole article (a draft's sentence comes from a source sentence; so here the
  faithful sentence is that source sentence verbatim, and the share wrongly rejected only says
  the check does not refuse what the sources literally say — paraphrases are measured by
  `eval-drafts` on real model output);
- *number swapped*: the same sentence with one number replaced by another number of the sources;
- *subject swapped*: one name replaced by another name of the sources.
Both corruptions keep every number and name inside the sources, so the lexical guard passes
them by construction: what catches them is whether facts stand together in one source sentence.

Reported per checker (lexical guard, semantic check, both): precision and recall on flagging a
corrupted sentence, and the share of faithful sentences wrongly rejected.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.datasets import read_bbc
from generation.citations import SentenceChecker, split_sources
from generation.data import split_of
from generation.guard import _NUMBER, SourceFacts, sentences

LEAD = 8


@dataclass(frozen=True, slots=True)
class Case:
    article_id: str
    kind: str  # faithful | number | subject
    sentence: str
    original: str


@dataclass
class EvalCheckerConfig:
    data: Path
    json_out: Path
    limit: int = 200  # articles
    val_fraction: float = 0.1
    split: str = "val"
    seed: int = 0


def build_cases(config: EvalCheckerConfig) -> tuple[list[Case], dict[str, tuple[str, str]]]:
    """The labelled cases and, per article, (title, the rest of the body) they are checked on."""
    from generation.data import Example

    rng = random.Random(config.seed)
    cases: list[Case] = []
    sources: dict[str, tuple[str, str]] = {}
    articles = [a for a in read_bbc(config.data) if a.body]
    if config.split != "all":
        articles = [
            a
            for a in articles
            if split_of(Example(a.id or "", a.body, "", split_key=a.body), config.val_fraction)
            == config.split
        ]
    for article in articles[: config.limit]:
        found = sentences(article.body)
        for i in range(min(LEAD, len(found))):
            rest = " ".join(s for j, s in enumerate(found) if j != i)
            facts = SourceFacts([article.title, rest])
            original = found[i]
            claims = facts.claims(original)
            if len(claims) < 2 or not facts.check(original).grounded:
                continue
            key = f"{article.id}#{i}"
            sources[key] = (article.title, " ".join(found))
            cases.append(Case(key, "faithful", original, original))
            swapped = _swap_number(original, rest, rng)
            if swapped:
                cases.append(Case(key, "number", swapped, original))
            swapped = _swap_name(original, claims.entities, facts, rest, rng)
            if swapped:
                cases.append(Case(key, "subject", swapped, original))
            break  # one sentence per article: articles, not sentences, are the sample
    return cases, sources


def _swap_number(sentence: str, rest: str, rng: random.Random) -> str | None:
    mine = _NUMBER.findall(sentence)
    others = sorted({n for n in _NUMBER.findall(rest) if n not in mine})
    if not mine or not others:
        return None
    target = rng.choice(mine)
    # Digits only bound a number: "£2.1bn" and "5%" must still match "2.1" and "5".
    pattern = rf"(?<![\d.]){re.escape(target)}(?!\d|\.\d)"
    swapped = re.sub(pattern, rng.choice(others), sentence, count=1)
    return swapped if swapped != sentence else None


def _swap_name(
    sentence: str, names: list[str], facts: SourceFacts, rest: str, rng: random.Random
) -> str | None:
    candidates = sorted(
        {
            w
            for w in re.findall(r"\b[A-Z][a-z]{2,}\b", rest)
            if w not in names and w.lower() not in facts.words_lower_case
        }
    )
    mine = [n for n in names if re.search(rf"\b{re.escape(n)}\b", sentence)]
    if not mine or not candidates:
        return None
    target = rng.choice(mine)
    swapped = re.sub(rf"\b{re.escape(target)}\b", rng.choice(candidates), sentence, count=1)
    return swapped if swapped != sentence else None


def _scores(flags: list[bool], corrupted: list[bool]) -> dict[str, float]:
    caught = sum(f and c for f, c in zip(flags, corrupted, strict=True))
    flagged = sum(flags)
    bad = sum(corrupted)
    faithful = len(corrupted) - bad
    wrongly = sum(f and not c for f, c in zip(flags, corrupted, strict=True))
    return {
        "precision": caught / flagged if flagged else 0.0,
        "recall": caught / bad if bad else 0.0,
        "faithful_rejected": wrongly / faithful if faithful else 0.0,
        "flagged": flagged,
    }


def main(
    config: EvalCheckerConfig, encode: Callable[[list[str]], Any] | None = None
) -> dict[str, Any]:
    cases, sources = build_cases(config)
    checkers: dict[str, SentenceChecker] = {}
    lexical, semantic = [], []
    for case in cases:
        title, rest = sources[case.article_id]
        if case.article_id not in checkers:
            checkers[case.article_id] = SentenceChecker(
                split_sources([(case.article_id, title, rest)]), SourceFacts([title, rest]), encode
            )
        checker = checkers[case.article_id]
        lexical.append(not checker.facts.check(case.sentence).grounded)
        semantic.append(not checker.check(case.sentence).supported)
    corrupted = [c.kind != "faithful" for c in cases]
    by_kind = {
        kind: {
            "cases": sum(c.kind == kind for c in cases),
            "lexical_flagged": sum(
                f for f, c in zip(lexical, cases, strict=True) if c.kind == kind
            ),
            "semantic_flagged": sum(
                f for f, c in zip(semantic, cases, strict=True) if c.kind == kind
            ),
        }
        for kind in ("faithful", "number", "subject")
    }
    both = [a or b for a, b in zip(lexical, semantic, strict=True)]
    report = {
        "kind": "checker",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "articles": len(sources),
        "cases": len(cases),
        "by_kind": by_kind,
        "lexical": _scores(lexical, corrupted),
        "semantic": _scores(semantic, corrupted),
        "combined": _scores(both, corrupted),
        "examples": [
            {**asdict(c), "lexical_flagged": lx, "semantic_flagged": se}
            for c, lx, se in list(zip(cases, lexical, semantic, strict=True))[:12]
        ],
    }
    config.json_out.parent.mkdir(parents=True, exist_ok=True)
    config.json_out.write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict[str, Any]) -> str:
    rows = ["| checker | precision | recall | faithful wrongly rejected |", "|---|---|---|---|"]
    for name in ("lexical", "semantic", "combined"):
        r = report[name]
        rows.append(
            f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['faithful_rejected']:.3f} |"
        )
    kinds = report["by_kind"]
    rows.append("")
    rows.append(
        f"{report['cases']} cases from {report['articles']} held-out articles: "
        + ", ".join(f"{k} {v['cases']}" for k, v in kinds.items())
    )
    return "\n".join(rows)


__all__ = ["EvalCheckerConfig", "build_cases", "format_table", "main"]
