"""`newsroom eval-ads`: sponsored-slot policies measured offline on real MIND impressions.

Setup. Only impressions the ranking head never trained on are used: its validation and test
splits (`splits`). Validation impressions picked the stopping epoch (one scalar, validation AUC)
but never moved a weight, and the popularity / co-click counts come from training impressions
only, so they are as unseen as the test split for what is measured here; `splits=("test",)` is
the strict variant. A seeded `creative_fraction` of the distinct candidate news ids is held back
as *creatives*: each is one advertiser's campaign with a lognormal bid per click. In every
impression, the candidates that are creatives are its eligible ads (their MIND `clicked` label
is the ad click) and the others are organic. Readers (`user_key`) are split in two halves: the
ad head (`ranking.ad_head`: platt, second_head) is fitted on the *ad-train* half, and every
number is reported on the *ad-test* half.

Feeds. The organic feed of an impression is its organic candidates ranked by the content head's
click probability (`ClickScorer` on the same features serving computes), top `k`. Ads are
inserted at the configured feed positions, so organic items below an ad shift down by one and
the feed grows by the number of ads (nothing is cut off).

Position model (an assumption, not measured). MIND labels say whether the reader clicked the
item where MIND showed it; the original positions are not in the data. Each label is read as
"would click if examined", and examination at 0-based feed position p has probability
1 / log2(p + 2) (the DCG discount: 1 at the top, 0.5 at position 2, 0.29 at position 10). An
item's expected clicks are `label x exam(position)`, for organic items and ads alike. Organic
loss is the relative drop of expected organic clicks against the same feed without ads, which
comes only from the positional shift; a reader who leaves a feed because of its ads is not
modelled.

Policies, each filling up to N slots top down: `random` (a random eligible ad, first price:
pays its bid per click), `highest_bid` (ads by bid, each pays the next bid down, 0 when no bid
is left: it knows no pCTR, so no reserve), `ecpm` (`ranking.auction.run_auction` with pCTR
from the chosen ad head, reserve on, quality floor off) and `ecpm_floor` (the same with the
quality floor at an exchange rate: money per organic click displaced).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ranking.ad_head import AdHead, AdHeadKind, CreativeScores, calibration, score_creatives
from ranking.auction import AdBid, AuctionConfig, Placement, run_auction
from ranking.data import (
    EmbeddingCache,
    InteractionStats,
    ItemCatalog,
    MindImpression,
    Split,
    build_catalog,
    impression_arrays,
    read_impressions,
    split_of,
    user_context,
)
from ranking.features import FEATURE_NAMES
from ranking.scorer import ClickScorer, read_metadata
from retrieval.embedder import Embedder

log = logging.getLogger(__name__)

Policy = Literal["random", "highest_bid", "ecpm", "ecpm_floor"]
POLICIES: tuple[Policy, ...] = ("random", "highest_bid", "ecpm", "ecpm_floor")
HEAD_KINDS: tuple[AdHeadKind, ...] = ("identity", "platt", "second_head")


@dataclass
class EvalAdsConfig:
    data: Path  # impressions.jsonl + news.tsv
    model: Path  # the ranking head
    json_out: Path | None = None  # the report; its PNG is written beside it
    cache_dir: Path = Path("var/cache")
    train_data: Path | None = None  # the head's training data (default: as recorded)
    splits: tuple[Split, ...] = ("val", "test")  # the ranker's splits counted as unseen
    seed: int = 0
    creative_fraction: float = 0.15  # share of distinct candidate ids held back as creatives
    bid_median: float = 0.5  # money per click
    bid_sigma: float = 0.5  # lognormal spread of bids
    ad_loads: tuple[int, ...] = (1, 2, 3)
    # The ecpm_floor curve; it runs past the serving default (0.05) to where the floor starts
    # to cost revenue.
    exchange_rates: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    exchange_rate: float = 0.05  # ecpm_floor in the policy table (settings.ads.exchange_rate)
    k: int = 10  # organic items per feed
    positions: tuple[int, ...] = (2, 6, 10)
    reserve_ecpm: float = 0.5
    save_head: Path | None = None  # write the chosen ad head here (AdHead.save)
    bootstrap: int = 1000  # resamples of ad-test feeds for the 95% intervals
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.creative_fraction < 1.0:
            raise ValueError("creative_fraction must be between 0 and 1 (exclusive)")
        if not self.splits or set(self.splits) - {"val", "test"}:
            raise ValueError("splits: the ranker's 'val' and/or 'test' (never 'train')")
        if any(n < 1 or n > len(self.positions) for n in self.ad_loads):
            raise ValueError(f"ad loads must be between 1 and {len(self.positions)} (positions)")
        if self.k < 1:
            raise ValueError("k (organic items per feed) must be >= 1")
        AuctionConfig(tuple(self.positions), self.reserve_ecpm, self.exchange_rate)  # validates


# --- position model ---------------------------------------------------------------------------
def examination(positions: np.ndarray) -> np.ndarray:
    """P(examined) at 0-based feed positions: 1 / log2(position + 2)."""
    return 1.0 / np.log2(np.asarray(positions, dtype=np.float64) + 2.0)


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    """Expected clicks of one feed under the position model."""

    organic_clicks: float  # with the ads in place
    organic_clicks_without_ads: float
    ad_clicks: float
    revenue: float  # sum of price x expected clicks per ad
    ads_shown: int


def feed_outcome(
    organic_labels: np.ndarray,  # (k,) click labels of the organic feed, in feed order
    placements: Sequence[Placement],
    ad_labels: dict[str, float],  # campaign id -> click label of its creative here
) -> FeedOutcome:
    """Organic item i lands below every ad placed at or above its final position."""
    n = len(organic_labels)
    ad_positions = sorted(p.position for p in placements)
    assert all(p < n + len(ad_positions) for p in ad_positions), "an ad past the feed end"
    organic_positions = np.arange(n)
    for position in ad_positions:
        # Items at or below an ad's slot move down by one, processed top down.
        organic_positions = organic_positions + (organic_positions >= position)
    organic = float(organic_labels @ examination(organic_positions))
    without = float(organic_labels @ examination(np.arange(n)))
    clicks = [
        ad_labels[p.bid.campaign_id] * float(examination(np.array(p.position))) for p in placements
    ]
    revenue = sum(p.price_cpc * c for p, c in zip(placements, clicks, strict=True))
    return FeedOutcome(organic, without, float(sum(clicks)), float(revenue), len(placements))


# --- policies ---------------------------------------------------------------------------------
def place_in_order(
    ranked: Sequence[AdBid],
    prices: Sequence[float],
    n_organic: int,
    slots: int,
    positions: Sequence[int],
) -> list[Placement]:
    """Fill positions top down with ads in the given order (no floor): the same feasibility
    rule as `run_auction`, an ad needs an organic item at or below it."""
    placements: list[Placement] = []
    for position in positions:
        if len(placements) >= min(slots, len(ranked)):
            break
        if position - len(placements) >= n_organic:
            break
        j = len(placements)
        placements.append(Placement(ranked[j], position, round(float(prices[j]), 6), 0.0))
    return placements


def highest_bid_placements(
    bids: Sequence[AdBid], n_organic: int, slots: int, positions: Sequence[int]
) -> list[Placement]:
    """Ranked by bid; each pays the next bid down (its own at most), 0 when none is left."""
    ranked = sorted(bids, key=lambda b: (-b.bid_cpc, b.campaign_id))
    prices = [
        min(b.bid_cpc, ranked[j + 1].bid_cpc) if j + 1 < len(ranked) else 0.0
        for j, b in enumerate(ranked)
    ]
    return place_in_order(ranked, prices, n_organic, slots, positions)


def random_placements(
    bids: Sequence[AdBid],
    n_organic: int,
    slots: int,
    positions: Sequence[int],
    rng: np.random.Generator,
) -> list[Placement]:
    """A random order of eligible ads, each paying its own bid (first price)."""
    ranked = [bids[i] for i in rng.permutation(len(bids))]
    return place_in_order(ranked, [b.bid_cpc for b in ranked], n_organic, slots, positions)


# --- data -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Creative:
    campaign_id: str  # one advertiser, one campaign per creative
    bid_cpc: float


@dataclass
class Feed:
    """One ad-test impression, ready for every policy."""

    organic_labels: np.ndarray  # (k,) in feed order
    organic_probability: np.ndarray  # (k,) the content head's click probability, same order
    bids: list[AdBid]  # eligible creatives, pCTR from the chosen ad head
    ad_labels: dict[str, float]  # campaign id -> clicked


def _unit(text: str) -> float:
    """A deterministic number in [0, 1) for a string."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2**64


def choose_creatives(
    candidate_ids: Iterable[str], fraction: float, seed: int, bid_median: float, bid_sigma: float
) -> dict[str, Creative]:
    """`fraction` of the distinct ids, picked by a seeded hash of the news id, each with a
    lognormal bid (median `bid_median`)."""
    ids = sorted(set(candidate_ids), key=lambda i: (_unit(f"{seed}:creative:{i}"), i))
    chosen = sorted(ids[: max(1, round(fraction * len(ids)))])
    rng = np.random.default_rng(seed)
    bids = bid_median * np.exp(bid_sigma * rng.standard_normal(len(chosen)))
    return {
        nid: Creative(f"adv-{n:04d}", round(float(bid), 4))
        for n, (nid, bid) in enumerate(zip(chosen, bids, strict=True))
    }


def reader_half(user_key: str, seed: int) -> Literal["ad_train", "ad_test"]:
    return "ad_train" if _unit(f"{seed}:ad-reader:{user_key}") < 0.5 else "ad_test"


# ranking.train has these two (resolve_recorded_path, portable_path), but importing it loads
# torch; this job runs on the numpy scorer only.
def _recorded_path(recorded: str) -> Path:
    from core.settings import REPO_ROOT

    path = Path(recorded)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _portable(path: Path) -> str:
    """Relative to the repository, so the committed report and ad head name no machine."""
    from core.settings import REPO_ROOT

    try:
        return os.path.relpath(Path(path).resolve(), REPO_ROOT)
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


def unseen_impressions(
    config: EvalAdsConfig, training: dict
) -> tuple[list[MindImpression], InteractionStats]:
    """Impressions of `config.data` identical to none the ranker trained on (or, with `splits`
    without "val", validated on), and the counts of its training split (as `held_out` in
    evaluation.ranker_eval)."""
    train_dir = Path(config.train_data or _recorded_path(training["data"]))
    if not (train_dir / "impressions.jsonl").exists():
        raise FileNotFoundError(
            f"the ranker's training data {train_dir} is missing; pass --train-data"
        )
    seed, val_f, test_f = training["seed"], training["val_fraction"], training["test_fraction"]
    train_imps = read_impressions(train_dir)
    part = [split_of(i.impression_id, seed, val_f, test_f) for i in train_imps]
    stats = InteractionStats.from_impressions(
        [i for i, p in zip(train_imps, part, strict=True) if p == "train"]
    )
    seen = {
        i.fingerprint() for i, p in zip(train_imps, part, strict=True) if p not in config.splits
    }
    evaluated = read_impressions(config.data)
    kept = [i for i in evaluated if i.fingerprint() not in seen]
    log.info("%d of %d impressions are unseen by the ranker", len(kept), len(evaluated))
    return kept, stats


@dataclass
class Scored:
    """One impression through the ranking head: organic candidates and creatives apart."""

    impression: MindImpression
    organic_index: np.ndarray  # (O,) candidate indices
    organic_probability: np.ndarray  # (O,)
    creative_index: np.ndarray  # (C,)
    creative_scores: CreativeScores


def score_impression(
    imp: MindImpression,
    creatives: dict[str, Creative],
    scorer: ClickScorer,
    catalog: ItemCatalog,
    stats: InteractionStats,
) -> Scored:
    max_history = scorer.config.max_history
    arrays = impression_arrays(imp, catalog, stats, max_history, leave_one_out=False)
    is_ad = np.array([c.id in creatives for c in imp.candidates], dtype=bool)
    organic, ads = np.flatnonzero(~is_ad), np.flatnonzero(is_ad)
    columns = [FEATURE_NAMES.index(f) for f in scorer.config.features]
    logits = scorer.click_logits(
        arrays.history,
        arrays.candidates[organic],
        scorer.category_ids([arrays.categories[i] for i in organic]),
        arrays.features[organic][:, columns],
    )
    # Creatives are scored as serving scores them: new items, no counts (ranking.ad_head).
    scores = score_creatives(
        scorer,
        user_context(imp, catalog, max_history),
        arrays.candidates[ads],
        [arrays.categories[i] for i in ads],
    )
    return Scored(imp, organic, 1.0 / (1.0 + np.exp(-logits)), ads, scores)


def _stack(scored: Sequence[Scored]) -> tuple[CreativeScores, np.ndarray]:
    """Every (impression, creative) pair: scores and click labels."""
    logits = np.concatenate([s.creative_scores.logits for s in scored])
    trunk = np.concatenate([s.creative_scores.trunk for s in scored])
    clicks = np.concatenate([s.impression.labels[s.creative_index] for s in scored])
    return CreativeScores(logits, trunk), clicks


def build_feed(s: Scored, head: AdHead, creatives: dict[str, Creative], k: int) -> Feed:
    order = np.argsort(-s.organic_probability, kind="stable")[:k]
    labels = s.impression.labels
    pctr = head.probability(s.creative_scores) if len(s.creative_index) else np.empty(0)
    bids, ad_labels = [], {}
    for i, p in zip(s.creative_index, pctr, strict=True):
        creative = creatives[s.impression.candidates[i].id]
        bids.append(AdBid(creative.campaign_id, creative.bid_cpc, float(p)))
        ad_labels[creative.campaign_id] = float(labels[i])
    return Feed(labels[s.organic_index[order]], s.organic_probability[order], bids, ad_labels)


# --- measurement ------------------------------------------------------------------------------
@dataclass
class PolicyRun:
    """Per-feed outcomes of one policy at one ad load: (F,) arrays."""

    revenue: np.ndarray
    ad_clicks: np.ndarray
    ads_shown: np.ndarray
    organic: np.ndarray
    organic_without: np.ndarray


def run_policy(
    feeds: Sequence[Feed],
    policy: Policy,
    slots: int,
    positions: tuple[int, ...],
    reserve_ecpm: float,
    exchange_rate: float,
    seed: int,
) -> PolicyRun:
    rng = np.random.default_rng([seed, slots])  # random policy: the same draws on every run
    auction = AuctionConfig(positions, reserve_ecpm, exchange_rate if policy == "ecpm_floor" else 0)
    outcomes = []
    for feed in feeds:
        n = len(feed.organic_labels)
        if policy == "random":
            placements = random_placements(feed.bids, n, slots, positions, rng)
        elif policy == "highest_bid":
            placements = highest_bid_placements(feed.bids, n, slots, positions)
        else:
            placements = run_auction(feed.bids, feed.organic_probability.tolist(), slots, auction)
        outcomes.append(feed_outcome(feed.organic_labels, placements, feed.ad_labels))
    return PolicyRun(
        np.array([o.revenue for o in outcomes]),
        np.array([o.ad_clicks for o in outcomes]),
        np.array([o.ads_shown for o in outcomes], dtype=np.float64),
        np.array([o.organic_clicks for o in outcomes]),
        np.array([o.organic_clicks_without_ads for o in outcomes]),
    )


def summarise(run: PolicyRun, resamples: np.ndarray) -> dict:
    """Rates over all feeds (ratios of sums) and 95% bootstrap intervals over feeds."""
    n = len(run.revenue)
    shown, clicks = run.ads_shown.sum(), run.ad_clicks.sum()
    base = run.organic_without.sum()
    summary = {
        "revenue_per_1000_feeds": round(float(1000.0 * run.revenue.sum() / n), 4),
        "ad_ctr": round(float(clicks / shown), 5) if shown else 0.0,
        "price_per_click": round(float(run.revenue.sum() / clicks), 4) if clicks else 0.0,
        "organic_loss": round(float(1.0 - run.organic.sum() / base), 5) if base else 0.0,
        "ads_per_feed": round(float(shown / n), 4),
    }
    if len(resamples):
        revenue = 1000.0 * run.revenue[resamples].mean(axis=1)
        bases = run.organic_without[resamples].sum(axis=1)
        loss = 1.0 - run.organic[resamples].sum(axis=1) / np.maximum(bases, 1e-12)
        summary["revenue_ci95"] = [round(float(v), 4) for v in np.percentile(revenue, [2.5, 97.5])]
        summary["organic_loss_ci95"] = [
            round(float(v), 5) for v in np.percentile(loss, [2.5, 97.5])
        ]
    return summary


def ranked_calibration(probabilities: np.ndarray, clicks: np.ndarray) -> dict:
    """`calibration()` plus the pooled AUC: a head can be calibrated on average and still
    rank ads no better than chance, and the auction needs both."""
    from sklearn.metrics import roc_auc_score

    return {
        **calibration(probabilities, clicks),
        "auc": round(float(roc_auc_score(clicks, probabilities)), 4),
    }


def main(config: EvalAdsConfig, embedder: Embedder | None = None) -> dict:
    """Fit and choose the ad head, measure every policy, write the JSON and PNG."""
    training = read_metadata(config.model)["training"]
    scorer = ClickScorer.load(config.model)
    if embedder is None:
        from core.settings import Settings

        embedder = Embedder(Settings().retrieval.model_path())
    impressions, stats = unseen_impressions(config, training)
    if not impressions:
        raise ValueError(f"{config.data}: every impression was used to train the ranker")
    creatives = choose_creatives(
        (c.id for i in impressions for c in i.candidates),
        config.creative_fraction,
        config.seed,
        config.bid_median,
        config.bid_sigma,
    )
    catalog = build_catalog(
        config.data, impressions, EmbeddingCache(config.cache_dir, embedder), config.progress
    )
    halves: dict[str, list[Scored]] = {"ad_train": [], "ad_test": []}
    for imp in impressions:
        halves[reader_half(imp.user_key, config.seed)].append(
            score_impression(imp, creatives, scorer, catalog, stats)
        )

    train_scores, train_clicks = _stack(halves["ad_train"])
    test_scores, test_clicks = _stack(halves["ad_test"])
    for name, clicks in (("ad-train", train_clicks), ("ad-test", test_clicks)):
        if len(np.unique(clicks)) < 2:
            raise ValueError(
                f"the {name} readers have {int(clicks.sum())} ad clicks in {len(clicks)} ad "
                "impressions: an ad head needs both; use more impressions or a larger "
                "creative_fraction"
            )
    heads = {kind: AdHead.fit(kind, train_scores, train_clicks) for kind in HEAD_KINDS}
    calibrations = {
        kind: ranked_calibration(head.probability(test_scores), test_clicks)
        for kind, head in heads.items()
    }
    chosen: AdHeadKind = min(HEAD_KINDS, key=lambda kind: calibrations[kind]["log_loss"])
    head = heads[chosen]
    log.info("ad head: %s (log loss %.4f)", chosen, calibrations[chosen]["log_loss"])

    feeds = [
        build_feed(s, head, creatives, config.k) for s in halves["ad_test"] if len(s.organic_index)
    ]
    positions = tuple(config.positions)
    rng = np.random.default_rng(config.seed)
    resamples = rng.integers(0, len(feeds), size=(config.bootstrap, len(feeds)))

    def measure(policy: Policy, slots: int, exchange_rate: float) -> dict:
        run = run_policy(
            feeds, policy, slots, positions, config.reserve_ecpm, exchange_rate, config.seed
        )
        return summarise(run, resamples)

    policies = {
        policy: {str(n): measure(policy, n, config.exchange_rate) for n in config.ad_loads}
        for policy in POLICIES
    }
    curve = [
        {"ad_load": n, "exchange_rate": x, **measure("ecpm_floor", n, x)}
        for n in config.ad_loads
        for x in config.exchange_rates
    ]
    organic_ctr = float(np.mean(np.concatenate([f.organic_labels for f in feeds])))
    result = {
        "data": _portable(config.data),
        "model": _portable(config.model),
        "unseen_splits": list(config.splits),
        "n_unseen_impressions": len(impressions),
        "n_creatives": len(creatives),
        "n_distinct_candidates": len({c.id for i in impressions for c in i.candidates}),
        "ad_train": {
            "impressions": len(halves["ad_train"]),
            "ad_impressions": len(train_clicks),
            "ad_clicks": int(train_clicks.sum()),
        },
        "ad_test": {
            "feeds": len(feeds),
            "feeds_with_eligible_ads": sum(1 for f in feeds if f.bids),
            "eligible_ads_per_feed": round(float(np.mean([len(f.bids) for f in feeds])), 3),
            "ad_impressions": len(test_clicks),
            "ad_clicks": int(test_clicks.sum()),
            "organic_feed_ctr": round(organic_ctr, 5),
        },
        "setup": {
            "k": config.k,
            "positions": list(positions),
            "reserve_ecpm": config.reserve_ecpm,
            "exchange_rate": config.exchange_rate,
            "bid_median": config.bid_median,
            "bid_sigma": config.bid_sigma,
            "creative_fraction": config.creative_fraction,
            "seed": config.seed,
            "position_model": "expected clicks = label x 1/log2(position + 2), 0-based",
            "bootstrap": config.bootstrap,
        },
        "calibration": calibrations,
        "chosen_head": chosen,
        "policies": policies,
        "ecpm_floor_curve": curve,
    }
    if config.save_head is not None:
        head.metadata = {
            "ranker": _portable(config.model),
            "data": _portable(config.data),
            "unseen_splits": list(config.splits),
            "seed": config.seed,
            "creative_fraction": config.creative_fraction,
            "ad_train_impressions": len(halves["ad_train"]),
            "ad_train_ad_impressions": len(train_clicks),
            "ad_train_clicks": int(train_clicks.sum()),
            "calibration_ad_test": calibrations[chosen],
            "chosen_over": {k: v["log_loss"] for k, v in calibrations.items()},
        }
        head.save(config.save_head)
        result["saved_head"] = _portable(config.save_head)
    if config.json_out:
        out = Path(config.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        plot(result, out.with_suffix(".png"))
    return result


# --- report -----------------------------------------------------------------------------------
def _ci(values: list[float] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return ""
    return f" [{values[0] * scale:.{digits}f}, {values[1] * scale:.{digits}f}]"


def format_table(result: dict) -> str:
    test = result["ad_test"]
    setup = result["setup"]
    lines = [
        f"ad-test feeds: {test['feeds']} ({test['feeds_with_eligible_ads']} with an eligible ad, "
        f"{test['eligible_ads_per_feed']} eligible per feed); creatives: {result['n_creatives']}"
        f" of {result['n_distinct_candidates']} candidate ids; ecpm_floor at exchange rate "
        f"{setup['exchange_rate']}; intervals: 95% bootstrap over feeds",
        "",
        "| policy | ads (N) | ads/feed | revenue /1000 feeds | ad CTR | price/click "
        "| organic loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy, loads in result["policies"].items():
        for n, m in loads.items():
            lines.append(
                f"| {policy} | {n} | {m['ads_per_feed']:.2f} | "
                f"{m['revenue_per_1000_feeds']:.2f}{_ci(m.get('revenue_ci95'))} | "
                f"{m['ad_ctr']:.4f} | {m['price_per_click']:.3f} | "
                f"{100 * m['organic_loss']:.2f}%{_ci(m.get('organic_loss_ci95'), 100)} |"
            )
    lines += [
        "",
        f"pCTR calibration on ad-test readers ({test['ad_impressions']} ad impressions, "
        f"{test['ad_clicks']} clicks); chosen by log loss: {result['chosen_head']}",
        "",
        "| ad head | log loss | ECE | AUC | mean pCTR | observed CTR | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, c in result["calibration"].items():
        mark = " (chosen)" if kind == result["chosen_head"] else ""
        lines.append(
            f"| {kind}{mark} | {c['log_loss']:.4f} | {c['ece']:.4f} | {c['auc']:.4f} | "
            f"{c['mean_pctr']:.4f} | "
            f"{c['observed_ctr']:.4f} | {c['n']} |"
        )
    lines += [
        "",
        "ecpm_floor: revenue per 1000 feeds / organic loss by ad load and exchange rate",
        "",
        "| ads (N) | exchange rate | ads/feed | revenue /1000 feeds | organic loss |",
        "|---|---|---|---|---|",
    ]
    for p in result["ecpm_floor_curve"]:
        lines.append(
            f"| {p['ad_load']} | {p['exchange_rate']} | {p['ads_per_feed']:.2f} | "
            f"{p['revenue_per_1000_feeds']:.2f} | {100 * p['organic_loss']:.2f}% |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"random": "x", "highest_bid": "s", "ecpm": "^"}
    loads = sorted({p["ad_load"] for p in result["ecpm_floor_curve"]})
    for n, color in zip(loads, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
        points = [p for p in result["ecpm_floor_curve"] if p["ad_load"] == n]
        xs = [100 * p["organic_loss"] for p in points]
        ys = [p["revenue_per_1000_feeds"] for p in points]
        ax.plot(xs, ys, "o-", color=color, label=f"ecpm_floor, {n} ad(s)")
        for p, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(
                f"{p['exchange_rate']:g}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=color,
            )
        for policy, marker in markers.items():
            m = result["policies"][policy].get(str(n))
            if m is not None:
                ax.scatter(
                    100 * m["organic_loss"],
                    m["revenue_per_1000_feeds"],
                    marker=marker,
                    color=color,
                    s=50,
                )
    ax.set_xlabel("organic clicks lost vs the feed without ads (%)")
    ax.set_ylabel("revenue per 1,000 feeds")
    ax.set_title(
        f"Sponsored slots on {result['ad_test']['feeds']} held-out MIND feeds "
        "(labels: exchange rate)"
    )
    # Colour is the ad load (as the lines'), shape the policy: one legend entry per policy.
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker=m, color="grey", linestyle="", label=policy)
        for policy, m in markers.items()
    ]
    ax.legend(handles=handles, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
