"""Headlines, summaries and drafts: prompt → model → faithfulness guard → (retry | extract).

`NewsWriter` knows nothing of storage or users: the service hands it article text and, for
personalization, a `Reader` (interest vector + top topics). Every output it returns has passed
the guard, or is an extract from the sources and says why.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from core.errors import GenerationCancelled, InvalidInput
from generation.backends import DecodeOptions, LMBackend
from generation.batching import DecodeBatcher
from generation.citations import Citation, SentenceChecker, split_sources
from generation.guard import GroundingReport, SourceFacts, sentences
from generation.lm import model_fingerprint
from generation.prompting import draft_prompt, prompt_ids, strip_special_tokens, task_prompt
from prompts import RenderedPrompt

TASK_OPTIONS = {
    "headline": DecodeOptions(max_new_tokens=24),
    "summary": DecodeOptions(max_new_tokens=64),
    "draft": DecodeOptions(max_new_tokens=200),
}
# Which served model writes which task (each role has its own adapter, or the base model).
MODEL_FOR_TASK = {"headline": "headline", "summary": "summary", "draft": "draft"}


def _fallback_reason(report: GroundingReport) -> str:
    if not report.unsupported or report.unsupported == ["(empty output)"]:
        return "extractive fallback: the model wrote nothing usable"
    return (
        "extractive fallback: the model's text had "
        + ", ".join(report.unsupported)
        + ", which the sources do not contain"
    )


@dataclass(frozen=True, slots=True)
class Generated:
    text: str
    grounded: bool
    fallback_reason: str | None  # set when the text is an extract, not the model's
    template: str
    model: str
    attempts: int = 1
    # What the guard rejected in the model's text when `text` is an extract instead.
    unsupported: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "grounded": self.grounded,
            "fallback_reason": self.fallback_reason,
            "unsupported": list(self.unsupported),
            "template": self.template,
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class Reader:
    """Who the output is for: an interest vector (segment centroid or profile) and topics."""

    vector: np.ndarray
    interests: list[str]
    segment: str


@dataclass
class DraftResult:
    headlines: list[Generated]
    draft: Generated
    source_ids: list[str]
    sentences: list[DraftSentence] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DraftSentence:
    """One sentence of a draft: the model's own (checked and cited), or an extract from a
    source that stands in for a model sentence the checks rejected."""

    text: str
    origin: Literal["model", "extract"]
    citations: tuple[Citation, ...]
    verbatim: bool = False  # a model sentence that copies its source nearly word for word
    rejected: str | None = None  # the model's sentence this extract replaced
    unsupported: tuple[str, ...] = ()  # why it was rejected

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "origin": self.origin,
            "citations": [c.as_dict() for c in self.citations],
            "verbatim": self.verbatim,
            "rejected": self.rejected,
            "unsupported": list(self.unsupported),
        }


@dataclass
class SourceArticle:
    id: str
    title: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}".strip()


class ModelSet:
    """Served models by role ('base', 'headline', 'summary'), loaded on first use."""

    def __init__(
        self,
        loader: Callable[[Path | None], LMBackend],
        adapters: dict[str, Path | None],
        base_name: str = "base",
    ) -> None:
        self._loader = loader
        self._adapters = {"base": None, **adapters}
        self._base_name = base_name
        self._loaded: dict[str, LMBackend] = {}
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def adapter_of(self, role: str) -> Path | None:
        adapter = self._adapters.get(role)
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            return None  # not trained yet: serve the base model, versioned as such
        return adapter

    def version_of(self, role: str) -> str:
        """Model version without loading the model (cache keys on the fast path)."""
        if role not in self._versions:
            self._versions[role] = model_fingerprint(Path(self._base_name), self.adapter_of(role))
        return self._versions[role]

    def get(self, role: str) -> LMBackend:
        with self._lock:
            if role not in self._loaded:
                adapter = self.adapter_of(role)
                # Roles sharing weights share one loaded model.
                twin = next((r for r in self._loaded if self.adapter_of(r) == adapter), None)
                self._loaded[role] = self._loaded[twin] if twin else self._loader(adapter)
            return self._loaded[role]

    def loaded(self) -> dict[str, str]:
        return {role: self.version_of(role) for role in self._loaded}


class Cancellation(Protocol):
    """Set when nobody waits for the output any more (`threading.Event` is one)."""

    def is_set(self) -> bool: ...


def decode(
    backend: LMBackend,
    ids: list[int],
    options: DecodeOptions,
    cancel: Cancellation | None = None,
    on_token: Callable[[str], None] | None = None,
    batcher: DecodeBatcher | None = None,
) -> str:
    """The completion as `backend.stream` yields it, checking `cancel` before the first token
    and after each: once set, the stream is closed (which stops the backend's decoding) and
    `GenerationCancelled` raised. With a `batcher` and nobody reading tokens, the completion
    is decoded whole in a batch with other waiting requests (`cancel` is then checked before
    and after: a batch is not interrupted for one of its members)."""
    if cancel is not None and cancel.is_set():  # queued for a client that has gone
        raise GenerationCancelled("the client went away: generation not started")
    if batcher is not None and on_token is None:
        text = batcher.generate(backend, ids, options)
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("the client went away: generation stopped")
        return text
    pieces: list[str] = []
    stream = backend.stream(ids, options)
    try:
        for piece in stream:
            if cancel is not None and cancel.is_set():
                break
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("the client went away: generation stopped")
    return "".join(pieces)


# --- output clean-up -----------------------------------------------------------------------------
# Echoed prompt tags and invented markup ("<news_preview>") are never part of a headline.
_TAG = re.compile(r"</?\s*[A-Za-z_][\w\-]{0,30}[^<>]{0,40}>")
_LABEL = re.compile(r"^(headline|title|summary|answer)\s*[:\-]\s*", re.IGNORECASE)


def clean_headline(text: str) -> str:
    text = _TAG.sub(" ", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = _LABEL.sub("", lines[0]).strip(" \"'*#\u201c\u201d\u2018\u2019")
    words = line.split()[:20]
    return " ".join(words).rstrip(" .;:,")


def clean_summary(text: str) -> str:
    text = " ".join(_TAG.sub(" ", text).split())
    text = _LABEL.sub("", text)
    found = sentences(text)
    first = found[0] if found else text
    return " ".join(first.split()[:60])


def clean_draft(text: str) -> str:
    text = _TAG.sub(" ", text)
    paragraphs = [" ".join(p.split()) for p in text.split("\n") if p.strip()]
    return "\n\n".join(paragraphs)


CLEAN = {"headline": clean_headline, "summary": clean_summary, "draft": clean_draft}


def lead_headline(body: str, words: int = 12) -> str:
    """Extractive headline: the opening words of the lead sentence."""
    found = sentences(body)
    return " ".join((found[0] if found else body).split()[:words]).rstrip(" .;:,")


def lead_sentence(body: str) -> str:
    found = sentences(body)
    return found[0] if found else " ".join(body.split()[:40])


SENTENCE_ENDS = frozenset(".!?\"'\u201d\u2019")  # incl. closing curly quotes


def _as_sentence(text: str) -> str:
    """Leads joined into one extract need their full stop (MIND abstracts often lack one)."""
    text = text.strip()
    return text if not text or text[-1] in SENTENCE_ENDS else text + "."


@dataclass
class NewsWriter:
    models: ModelSet
    encode: Callable[[list[str]], np.ndarray] | None = None  # sentence embeddings, for focus
    focus_sentences: int = 3
    options: dict[str, DecodeOptions] = field(default_factory=lambda: dict(TASK_OPTIONS))
    # Concurrent whole completions (summaries, greedy headlines) decode as one batch.
    batcher: DecodeBatcher | None = None

    # --- personalization ---------------------------------------------------------------------
    def focus(self, body: str, reader: Reader | None) -> tuple[str, str]:
        """(text for the prompt, best extract): the passages closest to the reader first."""
        found = sentences(body)
        if reader is None or self.encode is None or len(found) <= self.focus_sentences:
            return body, lead_sentence(body)
        candidates = found[:80]
        scores = self.encode(candidates) @ reader.vector  # (n,)
        best = np.argsort(-scores)[: self.focus_sentences]
        chosen = [candidates[i] for i in sorted(best)]
        return " ".join(chosen) + "\n" + body, candidates[int(best[0])]

    # --- the guarded generation loop ----------------------------------------------------------
    def _guarded(
        self,
        task: str,
        prompt: RenderedPrompt,
        facts: SourceFacts,
        fallback: str,
        options: DecodeOptions,
        on_token: Callable[[str], None] | None = None,
        cancel: Cancellation | None = None,
        first: str | None = None,
    ) -> Generated:
        """`first`: the first attempt's completion when it was decoded already (in a batch)."""
        backend = self.models.get(MODEL_FOR_TASK[task])
        version = self.models.version_of(MODEL_FOR_TASK[task])
        ids = prompt_ids(backend.tokenizer, prompt)
        tokenizer = backend.tokenizer
        if first is None:
            raw = decode(backend, ids, options, cancel, on_token, self.batcher)
        else:
            raw = first
        # Special tokens' text is dropped before clean-up, which then sees where sentences end.
        text = CLEAN[task](strip_special_tokens(tokenizer, raw))
        report = facts.check(text) if text else GroundingReport(0, ["(empty output)"])
        if report.grounded:
            return Generated(text, True, None, prompt.template_id, version)
        # One retry, with what the guard rejected suppressed.
        retry = replace(options, suppress=tuple(u for u in report.unsupported if u[0] != "("))
        second = CLEAN[task](strip_special_tokens(tokenizer, decode(backend, ids, retry, cancel)))
        second_report = facts.check(second) if second else GroundingReport(0, ["(empty output)"])
        if second_report.grounded:
            return Generated(second, True, None, prompt.template_id, version, attempts=2)
        return Generated(
            fallback,
            True,
            _fallback_reason(report),
            prompt.template_id,
            version,
            attempts=2,
            unsupported=tuple(u for u in report.unsupported if u[0] != "("),
        )

    # --- tasks ----------------------------------------------------------------------------------
    def _untrusted(self, task: str, *texts: str) -> list[str]:
        """Source texts without special tokens: they reach the prompt, the guard's facts and the
        extracts, and none of those may carry one."""
        tokenizer = self.models.get(MODEL_FOR_TASK[task]).tokenizer
        return [strip_special_tokens(tokenizer, text) for text in texts]

    def _prompt(
        self, task: str, text: str, reader: Reader | None, version: str | None = None
    ) -> RenderedPrompt:
        """The task's template, or its personalized twin with the reader's interests; `version`
        picks another version of it (an experiment arm's `prompt_version`)."""
        tokenizer = self.models.get(MODEL_FOR_TASK[task]).tokenizer
        if reader is None:
            return task_prompt(tokenizer, task, text, version)
        interests = ", ".join(reader.interests) or "general news"
        return task_prompt(tokenizer, f"personalized_{task}", text, version, interests=interests)

    def _summary_parts(
        self, title: str, body: str, reader: Reader | None, version: str | None = None
    ) -> tuple[RenderedPrompt, SourceFacts, str]:
        title, body = self._untrusted("summary", title, body)
        text, extract = self.focus(body, reader)
        return self._prompt("summary", text, reader, version), SourceFacts([title, body]), extract

    def summary(
        self,
        title: str,
        body: str,
        reader: Reader | None = None,
        prompt_version: str | None = None,
    ) -> Generated:
        prompt, facts, extract = self._summary_parts(title, body, reader, prompt_version)
        return self._guarded("summary", prompt, facts, extract, self.options["summary"])

    def summaries(self, items: list[tuple[str, str, Reader | None]]) -> list[Generated]:
        """Several summaries (title, body, reader) at once, as `summary` writes each: their first
        attempts decode as one batch (pregeneration); one the guard rejects is retried alone."""
        parts = [self._summary_parts(title, body, reader) for title, body, reader in items]
        backend = self.models.get(MODEL_FOR_TASK["summary"])
        options = self.options["summary"]
        firsts = backend.generate_batch(
            [prompt_ids(backend.tokenizer, prompt) for prompt, _, _ in parts], options
        )
        return [
            self._guarded("summary", prompt, facts, extract, options, first=first)
            for (prompt, facts, extract), first in zip(parts, firsts, strict=True)
        ]

    def headlines(
        self,
        title: str,
        body: str,
        n: int = 1,
        reader: Reader | None = None,
        cancel: Cancellation | None = None,
        prompt_version: str | None = None,
    ) -> list[Generated]:
        """n distinct grounded headlines: greedy first, then samples; extracts fill any gap."""
        title, body = self._untrusted("headline", title, body)
        text, extract = self.focus(body, reader)
        backend = self.models.get("headline")
        prompt = self._prompt("headline", text, reader, prompt_version)
        facts = SourceFacts([title, body])
        options = self.options["headline"]
        first = self._guarded(
            "headline", prompt, facts, lead_headline(extract), options, cancel=cancel
        )
        results = [first]
        seen = {first.text.lower()}
        ids = prompt_ids(backend.tokenizer, prompt)
        for seed in range(1, 2 * n + 1):
            if len(results) >= n:
                break
            sampled = replace(options, temperature=0.9, top_p=0.95, seed=seed)
            candidate = clean_headline(
                strip_special_tokens(backend.tokenizer, decode(backend, ids, sampled, cancel))
            )
            if candidate and candidate.lower() not in seen and facts.check(candidate).grounded:
                seen.add(candidate.lower())
                results.append(
                    Generated(
                        candidate,
                        True,
                        None,
                        prompt.template_id,
                        self.models.version_of("headline"),
                    )
                )
        extracts = [title, lead_headline(extract, 12), lead_headline(extract, 8)]
        extracts += [lead_headline(s, words) for s in sentences(body)[:6] for words in (12, 8)]
        for extract_text in extracts:
            if len(results) >= n:
                break
            if extract_text and extract_text.lower() not in seen:
                seen.add(extract_text.lower())
                results.append(
                    Generated(
                        extract_text,
                        True,
                        "extractive: too few distinct grounded variants",
                        prompt.template_id,
                        self.models.version_of("headline"),
                    )
                )
        return results[:n]

    def draft(
        self,
        brief: str,
        audience: str,
        sources: list[SourceArticle],
        on_token: Callable[[str], None] | None = None,
        n_headlines: int = 3,
        cancel: Cancellation | None = None,
        on_sentence: Callable[[DraftSentence], None] | None = None,
    ) -> DraftResult:
        """The draft, sentence by sentence: the model writes it (streamed to `on_token`); each
        sentence is checked (lexical guard + facts standing together in one cited source
        sentence, `generation.citations`) as it completes (`on_sentence`); a rejected one is
        written again on its own, after the accepted ones, with its unsupported words
        suppressed, else replaced by the closest source sentence. The draft is all extracts only
        when no model sentence survives. Setting `cancel` stops the work at the next token."""
        brief, audience = self._untrusted("draft", brief, audience)
        sources = [SourceArticle(s.id, *self._untrusted("draft", s.title, s.body)) for s in sources]
        backend = self.models.get(MODEL_FOR_TASK["draft"])
        version = self.models.version_of(MODEL_FOR_TASK["draft"])
        tokenizer = backend.tokenizer
        # The sources as the draft adapter trained on them: text the prompt cuts by tokens.
        leads = [(s.id, f"{s.title}. {s.body}".strip()) for s in sources]
        prompt = draft_prompt(tokenizer, brief, audience or "a general audience", leads)
        ids = prompt_ids(tokenizer, prompt)
        # The brief is the writer's own material: it may supply facts too.
        facts = SourceFacts([brief, *(s.text for s in sources)])
        checker = SentenceChecker(
            split_sources([(s.id, s.title, s.body) for s in sources]), facts, self.encode
        )
        written: list[str] = []  # sentences already told to `on_sentence`
        so_far: list[str] = []

        def token(piece: str) -> None:
            if on_token is not None:
                on_token(piece)
            so_far.append(piece)
            done = sentences(clean_draft(strip_special_tokens(tokenizer, "".join(so_far))))
            for sentence in done[len(written) : len(done) - 1]:  # the last may still grow
                written.append(sentence)
                if on_sentence is not None:
                    on_sentence(self._model_sentence(sentence, checker))

        raw = decode(backend, ids, self.options["draft"], cancel, token)
        text = clean_draft(strip_special_tokens(tokenizer, raw))
        model_sentences = sentences(text)
        for sentence in model_sentences[len(written) :]:
            if on_sentence is not None:
                on_sentence(self._model_sentence(sentence, checker))
        final = self._settle(model_sentences, checker, backend, ids, cancel)
        if not final:  # nothing survived: the draft is the sources' leads, each cited
            final = self._lead_extracts(checker)
        draft = self._draft_output(final, prompt.template_id, version, sources, brief)
        # Headlines for the draft stand on the draft and the sources it was grounded on.
        body = "\n".join([draft.text, *(s.body for s in sources[:1])])
        title = sources[0].title if sources else ""
        headlines = (
            self.headlines(title, body, n=n_headlines, cancel=cancel) if n_headlines > 0 else []
        )
        return DraftResult(headlines, draft, [s.id for s in sources], final)

    def _model_sentence(self, text: str, checker: SentenceChecker) -> DraftSentence:
        verdict = checker.check(text)
        return DraftSentence(
            text,
            "model",
            verdict.citations,
            verdict.verbatim,
            None if verdict.supported else text,
            verdict.unsupported,
        )

    def _settle(
        self,
        model_sentences: list[str],
        checker: SentenceChecker,
        backend: LMBackend,
        ids: list[int],
        cancel: Cancellation | None,
    ) -> list[DraftSentence]:
        """Keep the supported sentences; write each rejected one again, else replace it."""
        final: list[DraftSentence] = []
        used: set[str] = set()
        for sentence in model_sentences:
            verdict = checker.check(sentence)
            if verdict.supported:
                final.append(DraftSentence(sentence, "model", verdict.citations, verdict.verbatim))
                continue
            again = self._rewrite(final, verdict.unsupported, checker, backend, ids, cancel)
            if again is not None:
                final.append(again)
                continue
            extract = checker.best_extract(sentence, used | {s.text for s in final})
            if extract is None:
                continue
            used.add(extract.text)
            citation = Citation(extract.article_id, extract.text, extract.start, extract.end, 1.0)
            final.append(
                DraftSentence(
                    _as_sentence(extract.text),
                    "extract",
                    (citation,),
                    rejected=sentence,
                    unsupported=verdict.unsupported,
                )
            )
        return final

    @staticmethod
    def _lead_extracts(
        checker: SentenceChecker, per_source: int = 1, most: int = 3
    ) -> list[DraftSentence]:
        """The opening sentence of each source (up to `most`), as cited extracts."""
        final: list[DraftSentence] = []
        taken: dict[str, int] = {}
        for source in checker.sources:
            if source.index < 0 or taken.get(source.article_id, 0) >= per_source:
                continue
            taken[source.article_id] = taken.get(source.article_id, 0) + 1
            citation = Citation(source.article_id, source.text, source.start, source.end, 1.0)
            final.append(DraftSentence(_as_sentence(source.text), "extract", (citation,)))
            if len(final) == most:
                break
        return final

    def _rewrite(
        self,
        before: list[DraftSentence],
        unsupported: tuple[str, ...],
        checker: SentenceChecker,
        backend: LMBackend,
        ids: list[int],
        cancel: Cancellation | None,
    ) -> DraftSentence | None:
        """One more sentence after `before`, with the rejected words suppressed: the model's
        own words if they pass, else None."""
        tokenizer = backend.tokenizer
        prefix = " ".join(s.text for s in before)
        continued = ids + (
            tokenizer(prefix + " ", add_special_tokens=False)["input_ids"] if prefix else []
        )
        words = tuple(part for u in unsupported if u[0] != "(" for part in u.split(" + ") if part)
        options = replace(self.options["draft"], max_new_tokens=60, suppress=words)
        raw = decode(backend, continued, options, cancel)
        found = sentences(clean_draft(strip_special_tokens(tokenizer, raw)))
        if not found:
            return None
        verdict = checker.check(found[0])
        if not verdict.supported:
            return None
        return DraftSentence(found[0], "model", verdict.citations, verdict.verbatim)

    def _draft_output(
        self,
        final: list[DraftSentence],
        template: str,
        version: str,
        sources: list[SourceArticle],
        brief: str,
    ) -> Generated:
        rejected = tuple(dict.fromkeys(u for s in final for u in s.unsupported if u[0] != "("))
        if final and any(s.origin == "model" for s in final):
            return Generated(
                " ".join(s.text for s in final), True, None, template, version, unsupported=rejected
            )
        fallback = " ".join(_as_sentence(lead_sentence(s.body or s.title)) for s in sources[:3])
        reason = (
            _fallback_reason(GroundingReport(0, list(rejected)))
            if rejected
            else "extractive fallback: the model wrote nothing the sources support"
        )
        text = " ".join(s.text for s in final) or fallback or brief
        return Generated(text, True, reason, template, version, attempts=2, unsupported=rejected)

    def redo_sentence(
        self,
        brief: str,
        audience: str,
        sources: list[SourceArticle],
        written: list[str],
        index: int,
        cancel: Cancellation | None = None,
    ) -> DraftSentence:
        """A new sentence in place of `written[index]` (the writer asked for another): the
        model's, after the sentences before it, sampled so that it differs, and checked; else
        the closest source sentence not in the draft yet."""
        brief, audience = self._untrusted("draft", brief, audience)
        sources = [SourceArticle(s.id, *self._untrusted("draft", s.title, s.body)) for s in sources]
        backend = self.models.get(MODEL_FOR_TASK["draft"])
        tokenizer = backend.tokenizer
        leads = [(s.id, f"{s.title}. {s.body}".strip()) for s in sources]
        prompt = draft_prompt(tokenizer, brief, audience or "a general audience", leads)
        ids = prompt_ids(tokenizer, prompt)
        facts = SourceFacts([brief, *(s.text for s in sources)])
        checker = SentenceChecker(
            split_sources([(s.id, s.title, s.body) for s in sources]), facts, self.encode
        )
        prefix = " ".join(written[:index])
        continued = ids + (
            tokenizer(prefix + " ", add_special_tokens=False)["input_ids"] if prefix else []
        )
        current = written[index] if index < len(written) else ""
        for seed in range(1, 4):
            options = replace(
                self.options["draft"], max_new_tokens=60, temperature=0.8, top_p=0.95, seed=seed
            )
            found = sentences(
                clean_draft(
                    strip_special_tokens(tokenizer, decode(backend, continued, options, cancel))
                )
            )
            if found and found[0] != current:
                verdict = checker.check(found[0])
                if verdict.supported:
                    return DraftSentence(found[0], "model", verdict.citations, verdict.verbatim)
        extract = checker.best_extract(current or brief, set(written))
        if extract is None:
            raise InvalidInput("the sources have no other sentence to offer", field="index")
        citation = Citation(extract.article_id, extract.text, extract.start, extract.end, 1.0)
        return DraftSentence(_as_sentence(extract.text), "extract", (citation,), rejected=current)
