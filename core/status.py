"""`StatusService`: health, the quality dashboard's data, and the studio's example readers."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.reports import read_reports

if TYPE_CHECKING:
    from core.articles import ArticleService
    from core.changes import ChangeFollower
    from core.live import LiveState
    from core.writing import WritingService
    from ranking.recommend import Recommender

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Health:
    articles: int
    index_size: int
    index_kind: str
    model: str
    database: str
    ranker: str | None
    events: int
    mode: str
    live: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


class StatusService:
    def __init__(
        self,
        articles: ArticleService,
        recommender: Recommender | None,
        live: LiveState,
        follower: ChangeFollower,
        report_dirs: tuple[Path, ...],
        example_readers_path: Path | None,
    ) -> None:
        self.articles = articles
        self.recommender = recommender
        self.live = live
        self.follower = follower
        self.report_dirs = report_dirs
        self.example_readers_path = example_readers_path
        self.writing: WritingService | None = None

    def health(self) -> Health:
        storage = self.articles.storage
        stats = self.follower.stats
        return Health(
            articles=storage.count_articles(),
            index_size=len(self.articles.index),
            index_kind=self.articles.index.kind,
            model=self.articles.embedder.name,
            database=storage.engine.dialect.name,
            ranker=self.recommender.head_name if self.recommender else None,
            events=storage.count_events(),
            mode=self.live.mode,
            live=self.live.status(),
            log={
                "events_seq": self.follower.events.position,
                "changes_seq": self.follower.changes.position,
                "events_applied": stats.events_applied,
                "changes_applied": stats.changes_applied,
                "last_catch_up": stats.last_catch_up,
                "errors": stats.errors,
            },
        )

    def quality(self) -> dict[str, Any]:
        """What the quality dashboard shows: the evaluation reports, the served model and
        template versions, and the live counters."""
        from prompts import TEMPLATES

        health = self.health()
        models: dict[str, str | None] = {"embedder": health.model, "ranker": health.ranker}
        generation = None
        if self.writing is not None:
            models.update(self.writing.model_versions())
            generation = self.writing.stats()
        return {
            "reports": [asdict(report) for report in read_reports(self.report_dirs)],
            "models": models,
            "templates": sorted(template.id for template in TEMPLATES.values()),
            "articles": health.articles,
            "index_size": health.index_size,
            "index_kind": health.index_kind,
            "events": health.events,
            "generation": generation,
        }

    def example_readers(self) -> list[str]:
        """Reader ids to try in the studio. Only `newsroom demo` writes them (public MIND ids
        of replayed readers): the database itself keeps pseudonyms, so it cannot list ids."""
        path = self.example_readers_path
        if path is None or not path.is_file():
            return []
        try:
            readers = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", path)
            return []
        return [r for r in readers if isinstance(r, str)] if isinstance(readers, list) else []

    def write_example_readers(self, readers: list[str]) -> None:
        path = self.example_readers_path
        if path is not None:
            staging = path.with_suffix(".tmp")
            staging.write_text(json.dumps(readers), encoding="utf-8")
            os.replace(staging, path)
