"""Evaluation reports as the offline commands wrote them, for the studio's quality dashboard.

`newsroom eval-ranker`, `newsroom eval-generation` and `python -m evaluation.personalization`
each write one JSON file; this module finds them and tells their kinds apart by shape, so a new
report appears on the dashboard by being written into a report folder, with no registry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

ReportKind = Literal["ranking", "generation", "personalization"]


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    kind: ReportKind
    modified: datetime
    report: dict[str, Any]


def kind_of(report: object) -> ReportKind | None:
    """Which evaluation wrote it, from its keys; None for any other JSON."""
    if not isinstance(report, dict):
        return None
    if "n_impressions" in report and isinstance(report.get("systems"), dict):
        return "ranking"
    if "task" in report and isinstance(report.get("systems"), dict):
        return "generation"
    if "uplift" in report and "pairs" in report:
        return "personalization"
    return None


def read_reports(directories: Iterable[Path]) -> list[Report]:
    """Every report in `directories` (top level, `*.json`), newest first. A file that is not
    a report, or cannot be read, is skipped with a warning rather than failing the dashboard."""
    found: list[Report] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.json")):
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                log.warning("skipping report %s: %s", path.name, error)
                continue
            kind = kind_of(report)
            if kind is None:
                continue
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            found.append(Report(path.name, kind, modified, report))
    return sorted(found, key=lambda r: r.modified, reverse=True)
