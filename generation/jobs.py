"""Generation jobs: what the API asks of the model, as plain data.

A job carries everything the model needs (article text, the reader's interest vector and topics,
the draft's sources), so whoever runs it needs no database and no index: a thread of this
process (embedded mode) or a `newsroom generation-worker` on another host (shared mode). The
API resolves ids, checks the cache before queueing, and stores what comes back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import GenerationCancelled, ModelUnavailable, NewsroomError
from generation.writer import NewsWriter, Reader, SourceArticle

JobKind = Literal["summary", "summaries", "headlines", "draft", "draft_sentence"]
# Which served model a job runs on (its version is checked by whoever runs it).
ROLE_OF = {
    "summary": "summary",
    "summaries": "summary",
    "headlines": "headline",
    "draft": "draft",
    "draft_sentence": "draft",
}


class GenerationFailed(ModelUnavailable):
    """The model work failed or its worker was lost (503: retrying may succeed)."""


@dataclass(frozen=True, slots=True)
class GenerationJob:
    kind: JobKind
    args: dict[str, Any]
    model: str  # the version the caller caches the result under: the runner must serve it
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline: float = 0.0  # wall clock; a job picked up later than this is not run

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "args": self.args,
            "model": self.model,
            "job_id": self.job_id,
            "deadline": self.deadline,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationJob:
        return cls(data["kind"], data["args"], data["model"], data["job_id"], data["deadline"])

    @property
    def expired(self) -> bool:
        return bool(self.deadline) and time.time() > self.deadline


def reader_args(reader: Reader | None) -> dict[str, Any] | None:
    if reader is None:
        return None
    return {
        "vector": np.asarray(reader.vector, dtype=np.float32).tolist(),
        "interests": list(reader.interests),
        "segment": reader.segment,
    }


def _reader(data: dict[str, Any] | None) -> Reader | None:
    if data is None:
        return None
    return Reader(np.asarray(data["vector"], dtype=np.float32), data["interests"], data["segment"])


def error_of(exc: BaseException) -> dict[str, Any]:
    """A failure as data (sent back from a worker)."""
    if isinstance(exc, NewsroomError):
        return {"type": type(exc).__name__, "message": exc.message, "field": exc.field}
    return {"type": "GenerationFailed", "message": f"generation failed: {exc}", "field": None}


def raise_error(error: dict[str, Any]) -> None:
    if error.get("type") == "GenerationCancelled":
        raise GenerationCancelled(error.get("message") or "cancelled")
    raise GenerationFailed(error.get("message") or "generation failed")


class JobRunner:
    """Runs jobs with one `NewsWriter`."""

    def __init__(self, writer: NewsWriter) -> None:
        self.writer = writer

    def run(
        self,
        job: GenerationJob,
        on_token: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_sentence: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """The job's result as JSON-ready data. `cancelled()` is asked before starting and
        between tokens; when it says yes the job stops with `GenerationCancelled`."""
        flag = _Flag(cancelled or (lambda: False))
        if flag.is_set() or job.expired:
            raise GenerationCancelled("the request was cancelled before generation started")
        served = self.writer.models.version_of(ROLE_OF[job.kind])
        if served != job.model:
            raise GenerationFailed(
                f"this worker serves model {served} for {job.kind}, the API expects "
                f"{job.model}: deploy the same adapters on API and generation hosts"
            )

        args = job.args
        if job.kind == "summary":
            summary = self.writer.summary(
                args["title"],
                args["body"],
                _reader(args["reader"]),
                prompt_version=args.get("prompt_version"),
            )
            return summary.as_dict()
        if job.kind == "summaries":  # pregeneration: decoded as one batch
            items = [(i["title"], i["body"], _reader(i["reader"])) for i in args["items"]]
            return [s.as_dict() for s in self.writer.summaries(items)]
        if job.kind == "headlines":
            variants = self.writer.headlines(
                args["title"],
                args["body"],
                n=args["n"],
                reader=_reader(args["reader"]),
                cancel=flag,
                prompt_version=args.get("prompt_version"),
            )
            return [v.as_dict() for v in variants]
        sources = [SourceArticle(s["id"], s["title"], s["body"]) for s in args["sources"]]
        if job.kind == "draft_sentence":
            sentence = self.writer.redo_sentence(
                args["brief"], args["audience"], sources, args["sentences"], args["index"], flag
            )
            return sentence.as_dict()
        result = self.writer.draft(
            args["brief"],
            args["audience"],
            sources,
            on_token=on_token,
            cancel=flag,
            on_sentence=(lambda s: on_sentence(s.as_dict())) if on_sentence else None,
        )
        return {
            "draft": result.draft.as_dict(),
            "sentences": [s.as_dict() for s in result.sentences],
            "headlines": [h.as_dict() for h in result.headlines],
            "source_ids": result.source_ids,
        }


class _Flag:
    """A `cancelled()` callable as the writer's cancellation flag."""

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self._cancelled = cancelled

    def is_set(self) -> bool:
        return self._cancelled()
