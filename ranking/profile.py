"""User profiles built incrementally from events.

A profile is a time-decayed, type-weighted sum of the embeddings of the articles a user engaged
with: dismissals add a negative weight and push the profile away. Every event updates the sums in
O(d); nothing is recomputed from the whole history. Decay is applied lazily relative to the
newest event seen, so events arriving out of order still get the right weight.
"""

from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice

import numpy as np

from core.domain import as_utc

EVENT_TYPES = ("impression", "click", "dwell", "like", "share", "dismiss")
POSITIVE_TYPES = frozenset({"click", "dwell", "like", "share"})


@dataclass(slots=True)
class ProfileConfig:
    half_life_days: float = 14.0
    click: float = 1.0
    like: float = 2.0
    share: float = 2.5
    dismiss: float = -1.5
    dwell_base: float = 0.5  # a dwell event: base + bonus growing with time spent
    dwell_bonus: float = 1.5
    dwell_full_ms: float = 60_000.0
    history_size: int = 50  # recent positive articles kept for the head and explanations
    max_remembered: int = 2000  # read/dismissed ids kept for exclusion

    def weight(self, event_type: str, dwell_ms: int | None = None) -> float:
        if event_type == "dwell":
            share = min(max(dwell_ms or 0, 0) / self.dwell_full_ms, 1.0)
            return self.dwell_base + self.dwell_bonus * share
        return {
            "click": self.click,
            "like": self.like,
            "share": self.share,
            "dismiss": self.dismiss,
        }.get(event_type, 0.0)


@dataclass(slots=True)
class HistoryItem:
    key: int
    weight: float  # accumulated (undecayed at `ts`) weight of this article's events
    ts: float  # seconds since epoch of the latest event on it


@dataclass
class UserProfile:
    user_id: str
    dim: int
    vector_sum: np.ndarray = field(default=None)  # type: ignore[assignment]
    weight_sum: float = 0.0  # sum of |weights|, decayed alongside vector_sum
    last_ts: float = 0.0
    n_events: int = 0
    history: OrderedDict[int, HistoryItem] = field(default_factory=OrderedDict)  # newest last
    # article key -> seconds since epoch of its latest event: retention prunes by it
    read: OrderedDict[int, float] = field(default_factory=OrderedDict)
    dismissed: OrderedDict[int, float] = field(default_factory=OrderedDict)
    categories: dict[str, float] = field(default_factory=dict)  # decayed positive weight

    def __post_init__(self) -> None:
        if self.vector_sum is None:
            self.vector_sum = np.zeros(self.dim, dtype=np.float32)

    # --- update -----------------------------------------------------------------------------
    def apply(
        self,
        event_type: str,
        article_key: int,
        article_vector: np.ndarray | None,
        category: str | None,
        ts: datetime,
        config: ProfileConfig,
        dwell_ms: int | None = None,
    ) -> None:
        """Fold one event into the profile (O(d))."""
        moment = (as_utc(ts) or ts).timestamp()
        rate = math.log(2) / (config.half_life_days * 86400.0)
        if moment >= self.last_ts:
            decay = math.exp(-rate * (moment - self.last_ts)) if self.n_events else 1.0
            self.vector_sum *= decay
            self.weight_sum *= decay
            self.categories = {c: w * decay for c, w in self.categories.items() if w * decay > 1e-4}
            self.last_ts = moment
            age_factor = 1.0
        else:  # late event: weigh it as if decayed up to the newest event
            age_factor = math.exp(-rate * (self.last_ts - moment))
        self.n_events += 1
        weight = config.weight(event_type, dwell_ms) * age_factor
        if weight == 0.0:
            return
        if article_vector is not None:
            self.vector_sum += weight * article_vector.astype(np.float32)
            self.weight_sum += abs(weight)
        if event_type == "dismiss":
            self.dismissed[article_key] = max(moment, self.dismissed.get(article_key, moment))
            self.history.pop(article_key, None)
            _trim(self.dismissed, config.max_remembered)
            return
        self.read[article_key] = max(moment, self.read.get(article_key, moment))
        self.read.move_to_end(article_key)
        _trim(self.read, config.max_remembered)
        item = self.history.pop(article_key, None)
        if item is None:
            item = HistoryItem(article_key, 0.0, moment)
        item.weight += weight
        item.ts = max(item.ts, moment)
        self.history[article_key] = item
        while len(self.history) > config.history_size:
            self.history.popitem(last=False)
        if category:
            self.categories[category] = self.categories.get(category, 0.0) + weight

    def forget_before(self, cutoff: float, events_removed: int) -> None:
        """Retention: drop the history, read and dismissed entries whose latest event is older
        than `cutoff` (seconds since epoch), and count `events_removed` fewer events. The
        decayed sums (vector, categories) keep their share of those events."""
        self.history = OrderedDict((k, h) for k, h in self.history.items() if h.ts >= cutoff)
        self.read = OrderedDict((k, ts) for k, ts in self.read.items() if ts >= cutoff)
        self.dismissed = OrderedDict((k, ts) for k, ts in self.dismissed.items() if ts >= cutoff)
        self.n_events = max(0, self.n_events - events_removed)

    def copy(self) -> UserProfile:
        """A profile that changes independently of this one."""
        return replace(
            self,
            vector_sum=self.vector_sum.copy(),
            history=OrderedDict(
                (key, HistoryItem(item.key, item.weight, item.ts))
                for key, item in self.history.items()
            ),
            read=self.read.copy(),
            dismissed=self.dismissed.copy(),
            categories=dict(self.categories),
        )

    # --- read -------------------------------------------------------------------------------
    @property
    def vector(self) -> np.ndarray | None:
        """Unit profile vector, or None for a user with no positive signal yet."""
        norm = float(np.linalg.norm(self.vector_sum))
        if norm < 1e-8:
            return None
        return (self.vector_sum / norm).astype(np.float32)

    def history_weights(self, config: ProfileConfig) -> list[tuple[int, float]]:
        """(article key, decayed weight) of recent positive items, newest first."""
        rate = math.log(2) / (config.half_life_days * 86400.0)
        return [
            (item.key, item.weight * math.exp(-rate * (self.last_ts - item.ts)))
            for item in reversed(self.history.values())
        ]

    def recent_keys(self, n: int) -> list[int]:
        """Keys of the `n` most recent positive items, newest first (`history_weights` order,
        without computing the weights)."""
        return list(islice(reversed(self.history), n))

    def category_affinity(self) -> dict[str, float]:
        total = sum(w for w in self.categories.values() if w > 0)
        if total <= 0:
            return {}
        return {c: w / total for c, w in self.categories.items() if w > 0}

    def top_categories(self, n: int = 3) -> list[str]:
        affinity = self.category_affinity()
        return sorted(affinity, key=affinity.get, reverse=True)[:n]  # type: ignore[arg-type]

    # --- persistence ------------------------------------------------------------------------
    def state_json(self) -> str:
        return json.dumps(
            {
                "weight_sum": self.weight_sum,
                "last_ts": self.last_ts,
                "n_events": self.n_events,
                "history": [[h.key, h.weight, h.ts] for h in self.history.values()],
                "read": [[key, ts] for key, ts in self.read.items()],
                "dismissed": [[key, ts] for key, ts in self.dismissed.items()],
                "categories": self.categories,
            }
        )

    def to_blob(self) -> bytes:
        """A compact binary copy for the shared cache (Redis): a feed decodes it with a few
        `np.frombuffer` calls instead of parsing thousands of JSON numbers."""
        history = list(self.history.values())
        categories = json.dumps(self.categories).encode()
        header = _BLOB_HEADER.pack(
            _BLOB_FORMAT,
            self.dim,
            self.weight_sum,
            self.last_ts,
            self.n_events,
            len(history),
            len(self.read),
            len(self.dismissed),
            len(categories),
        )
        return b"".join(
            [
                header,
                np.ascontiguousarray(self.vector_sum, np.float32).tobytes(),
                np.fromiter((h.key for h in history), np.int64, len(history)).tobytes(),
                np.fromiter((h.weight for h in history), np.float64, len(history)).tobytes(),
                np.fromiter((h.ts for h in history), np.float64, len(history)).tobytes(),
                np.fromiter(self.read, np.int64, len(self.read)).tobytes(),
                np.fromiter(self.read.values(), np.float64, len(self.read)).tobytes(),
                np.fromiter(self.dismissed, np.int64, len(self.dismissed)).tobytes(),
                np.fromiter(self.dismissed.values(), np.float64, len(self.dismissed)).tobytes(),
                categories,
            ]
        )

    @classmethod
    def from_blob(cls, user_id: str, blob: bytes) -> UserProfile:
        (fmt, dim, weight_sum, last_ts, n_events, n_history, n_read, n_dismissed, n_cat) = (
            _BLOB_HEADER.unpack_from(blob)
        )
        if fmt != _BLOB_FORMAT:
            raise ValueError(f"profile blob format {fmt}, expected {_BLOB_FORMAT}")
        offset = _BLOB_HEADER.size

        def take(dtype: type, count: int) -> np.ndarray:
            nonlocal offset
            array = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
            offset += array.nbytes
            return array

        vector = take(np.float32, dim).copy()
        keys = take(np.int64, n_history).tolist()
        weights = take(np.float64, n_history).tolist()
        stamps = take(np.float64, n_history).tolist()
        read = zip(take(np.int64, n_read).tolist(), take(np.float64, n_read).tolist(), strict=True)
        dismissed = zip(
            take(np.int64, n_dismissed).tolist(),
            take(np.float64, n_dismissed).tolist(),
            strict=True,
        )
        categories = json.loads(blob[offset : offset + n_cat]) if n_cat else {}
        return cls(
            user_id=user_id,
            dim=dim,
            vector_sum=vector,
            weight_sum=weight_sum,
            last_ts=last_ts,
            n_events=n_events,
            history=OrderedDict(
                (k, HistoryItem(k, w, t)) for k, w, t in zip(keys, weights, stamps, strict=True)
            ),
            read=OrderedDict(read),
            dismissed=OrderedDict(dismissed),
            categories=categories,
        )

    @classmethod
    def from_state(cls, user_id: str, vector: bytes, state: str) -> UserProfile:
        data = json.loads(state)
        vector_sum = np.frombuffer(vector, dtype=np.float32).copy()
        return cls(
            user_id=user_id,
            dim=len(vector_sum),
            vector_sum=vector_sum,
            weight_sum=data["weight_sum"],
            last_ts=data["last_ts"],
            n_events=data["n_events"],
            history=OrderedDict((k, HistoryItem(k, w, t)) for k, w, t in data["history"]),
            read=_timed(data["read"], data["last_ts"]),
            dismissed=_timed(data["dismissed"], data["last_ts"]),
            categories=data["categories"],
        )


# format, dim, weight_sum, last_ts, n_events, then the lengths of history, read, dismissed and
# the categories' JSON; the arrays (keys, then times) follow in that order.
_BLOB_HEADER = struct.Struct("<HIddqIIII")
_BLOB_FORMAT = 2


def _timed(items: list, newest: float) -> OrderedDict[int, float]:
    """[[key, ts], ...]; a bare key (stored before entries had times) counts as newest."""
    return OrderedDict((i[0], i[1]) if isinstance(i, list) else (i, newest) for i in items)


def _trim(items: OrderedDict, limit: int) -> None:
    while len(items) > limit:
        items.popitem(last=False)
