"""Readers for the real dataset layouts in ../shared/data (see its README).

Each article reader yields `ArticleDraft`s with stable ids, so re-running an ingest finds the
same articles and skips what is unchanged. Text is cleaned (NFC, no control/zero-width chars).
"""

from __future__ import annotations

import csv
import html
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from core.domain import ArticleDraft, clean_text

log = logging.getLogger(__name__)

ArticleFormat = Literal["bbc", "mind", "agnews", "xsum", "jsonl"]
ARTICLE_FORMATS: tuple[str, ...] = ("bbc", "mind", "agnews", "xsum", "jsonl")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # One BBC file carries a Latin-1 pound sign; Latin-1 decodes any byte.
        return raw.decode("latin-1")


def _find(path: Path, name: str) -> Path:
    """`path` itself if it is a file, else `path/name`; a clear error when neither exists."""
    if path.is_file():
        return path
    candidate = path / name
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"expected {name} at {path} (a file, or a folder containing it)")


# --- BBC News Summary -------------------------------------------------------------------------
def read_bbc(path: Path) -> Iterator[ArticleDraft]:
    """`News Articles/<category>/NNN.txt`: line 1 headline, blank line, body."""
    root = Path(path)
    if (root / "News Articles").is_dir():
        root = root / "News Articles"
    if not root.is_dir():
        raise FileNotFoundError(f"no BBC 'News Articles' folder at {path}")
    categories = sorted(p for p in root.iterdir() if p.is_dir())
    if not categories:
        raise FileNotFoundError(f"{root} has no category folders")
    for category_dir in categories:
        for file in sorted(category_dir.glob("*.txt")):
            text = _decode(file.read_bytes())
            title, _, body = text.partition("\n")
            title = clean_text(title)
            if not title:
                continue
            yield ArticleDraft(
                id=f"bbc-{category_dir.name}-{file.stem}",
                title=title,
                body=clean_text(body),
                category=category_dir.name,
                language="en",
            )


def read_bbc_summaries(path: Path) -> dict[str, str]:
    """Article id -> extractive reference summary (`Summaries/<category>/NNN.txt`)."""
    root = Path(path)
    summaries = root / "Summaries" if (root / "Summaries").is_dir() else root
    found: dict[str, str] = {}
    for file in sorted(summaries.glob("*/*.txt")):
        text = clean_text(_decode(file.read_bytes()))
        # Sentences are often glued ("said.The"): restore the space.
        found[f"bbc-{file.parent.name}-{file.stem}"] = re.sub(r"([.!?])([A-Z])", r"\1 \2", text)
    return found


# --- MIND ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class MindNews:
    nid: str
    category: str
    subcategory: str
    title: str
    abstract: str
    url: str | None


def read_mind_news_rows(path: Path) -> Iterator[MindNews]:
    """news.tsv in the standard 8-column MIND layout, or the 5-column variant with a header."""
    file = _find(Path(path), "news.tsv")
    with open(file, encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle):
            fields = line.rstrip("\n").split("\t")
            if number == 0 and fields[0] == "nid":
                continue  # header of the dev-impressions variant
            if len(fields) < 4:
                log.warning("%s:%d: skipped, %d fields", file, number + 1, len(fields))
                continue
            fields += [""] * (6 - len(fields))
            title = clean_text(fields[3])
            if not title:
                continue
            yield MindNews(
                nid=fields[0],
                category=fields[1],
                subcategory=fields[2],
                title=title,
                abstract=clean_text(fields[4]),
                url=fields[5] or None,
            )


def read_mind(path: Path) -> Iterator[ArticleDraft]:
    for row in read_mind_news_rows(path):
        yield ArticleDraft(
            id=row.nid,
            title=row.title,
            body=row.abstract,
            category=row.category,
            url=row.url,
            language="en",
        )


@dataclass(slots=True)
class MindBehavior:
    impression_id: str
    user_id: str
    time: datetime
    history: list[str]
    impressions: list[tuple[str, int]]  # (news id, clicked)


def read_mind_behaviors(path: Path) -> Iterator[MindBehavior]:
    """behaviors.tsv (no header): impression id, user, time, history, `Nid-label` list."""
    file = _find(Path(path), "behaviors.tsv")
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                continue
            shown = []
            for item in fields[4].split():
                nid, _, label = item.rpartition("-")
                shown.append((nid, int(label)))
            yield MindBehavior(
                impression_id=fields[0],
                user_id=fields[1],
                time=datetime.strptime(fields[2], "%m/%d/%Y %I:%M:%S %p"),
                history=fields[3].split(),
                impressions=shown,
            )


# --- AG News ------------------------------------------------------------------------------------
_AG_ENTITY = re.compile(r" #(\d+);")


def _ag_text(text: str) -> str:
    # The dump writes "&#39;" as " #39;" and newlines as "\".
    text = _AG_ENTITY.sub(lambda m: f"&#{m.group(1)};", text).replace("\\", "\n")
    return clean_text(html.unescape(text))


def read_agnews(path: Path) -> Iterator[ArticleDraft]:
    """Headerless CSV `class,title,description`; class names from classes.txt (1-based)."""
    file = _find(Path(path), "test.csv")
    classes_file = file.parent / "classes.txt"
    classes = (
        [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
        if classes_file.exists()
        else []
    )
    with open(file, encoding="utf-8", newline="") as handle:
        for row_number, row in enumerate(csv.reader(handle)):
            if len(row) < 3:
                continue
            label = int(row[0])
            category = classes[label - 1] if 0 < label <= len(classes) else str(label)
            title = _ag_text(row[1])
            if not title:
                continue
            yield ArticleDraft(
                id=f"agnews-{row_number}",
                title=title,
                body=_ag_text(row[2]),
                category=category,
                language="en",
            )


# --- XSum ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class XsumRow:
    id: str
    document: str
    summary: str


def _fix_mojibake(text: str) -> str:
    return text.replace("Â£", "£").replace("Â", "")


def read_xsum_rows(path: Path) -> Iterator[XsumRow]:
    file = _find(Path(path), "xsum.jsonl")
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            document = clean_text(_fix_mojibake(record.get("document") or ""))
            if not document:
                continue  # one row has an empty document: nothing to ground on
            yield XsumRow(
                id=str(record["id"]),
                document=document,
                summary=clean_text(_fix_mojibake(record.get("summary") or "")),
            )


def read_xsum(path: Path) -> Iterator[ArticleDraft]:
    """XSum has no headline: the first line of the document stands as the title."""
    for row in read_xsum_rows(path):
        first, _, rest = row.document.partition("\n")
        yield ArticleDraft(id=f"xsum-{row.id}", title=first[:300], body=rest.strip(), language="en")


# --- JSON lines (our own ArticleIn shape) -----------------------------------------------------
def read_jsonl(path: Path) -> Iterator[ArticleDraft]:
    file = Path(path)
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                published = record.get("published_at")
                yield ArticleDraft(
                    id=record.get("id"),
                    title=clean_text(record["title"]),
                    body=clean_text(record.get("body") or ""),
                    category=record.get("category"),
                    url=record.get("url"),
                    language=record.get("language"),
                    published_at=datetime.fromisoformat(published) if published else None,
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{file}:{number}: not an article record ({exc})") from exc


READERS = {
    "bbc": read_bbc,
    "mind": read_mind,
    "agnews": read_agnews,
    "xsum": read_xsum,
    "jsonl": read_jsonl,
}


def read_articles(path: Path, fmt: str) -> Iterator[ArticleDraft]:
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(ARTICLE_FORMATS)}")
    return READERS[fmt](Path(path))
