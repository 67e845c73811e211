"""Simulations that check the learning loop's statistics on real MIND readers.

`python -m evaluation.loop_sim` runs every part and writes `models/reports/loop_sim.json` and
`models/reports/loop_sim.png`, and prints markdown tables. The parts:

- `ab`: A/B experiments on clicks per feed, looked at every day. The A/A false-positive rate of
  the sequential test stays below alpha, while a fixed-horizon test looked at daily inflates it;
  the power to detect a true CTR uplift, with and without CUPED.
- `interleaving`: readers needed to tell two rankers apart at 80% power with an A/B test of
  clicks per feed vs team-draft interleaving.
- `bandit`: Thompson sampling over headline variants: regret against always showing the best
  one and against a uniform A/B split; how often it ends sure (p_best > 0.95) of the best.

Readers are the real readers of `mind_small_dev_impressions` (../shared/data, read in place).
Each reader's click probability per shown item is their real CTR over their real impressions,
smoothed towards the overall CTR with a few pseudo-impressions, and their activity (feeds per day,
relative to the mean) is the length of their real click history: both are real per-reader
differences, and they are what makes clicks per feed noisy and CUPED useful. Part (a), retraining
the ranker from the loop's clicks, is to be added to `PARTS` by its own module; `run(parts=...)`
is the entry point a CLI command calls.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from tqdm import tqdm

from core.experiment_stats import ArmSample, analyze, to_json
from ranking.bandit import ThompsonSampler
from ranking.data import MindImpression, read_impressions
from ranking.interleaving import credit, preference_test, team_draft

log = logging.getLogger(__name__)

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mind_small_dev_impressions"
)
AB_VARIANTS: dict[str, dict[str, bool]] = {
    "sequential": {"sequential": True, "cuped": False},
    "fixed": {"sequential": False, "cuped": False},
    "sequential+cuped": {"sequential": True, "cuped": True},
    "fixed+cuped": {"sequential": False, "cuped": True},
}


@dataclass(frozen=True, slots=True)
class ReaderPool:
    """Real MIND readers: per-reader click probability and relative activity, and their
    impressions (candidates with real click labels) for the ranking simulations."""

    ctr: np.ndarray  # (R,) smoothed per-reader CTR
    activity: np.ndarray  # (R,) feeds per day relative to the mean reader (mean 1)
    impressions: tuple[MindImpression, ...]
    reader_of_impression: np.ndarray  # (I,) index into ctr/activity of each impression's reader
    overall_ctr: float

    @property
    def readers(self) -> int:
        return len(self.ctr)


def load_readers(data_dir: Path = DEFAULT_DATA, smoothing: float = 2.0) -> ReaderPool:
    """Group MIND impressions by reader. CTR = (clicks + smoothing * overall CTR) /
    (shown + smoothing); activity = history length / mean history length, clipped to
    [0.1, 5] so no reader is silent or dominates."""
    impressions = read_impressions(Path(data_dir))
    if not impressions:
        raise ValueError(f"{data_dir}/impressions.jsonl has no impressions")
    shown: dict[str, int] = defaultdict(int)
    clicked: dict[str, int] = defaultdict(int)
    history: dict[str, int] = defaultdict(int)
    for imp in impressions:
        shown[imp.user_key] += len(imp.candidates)
        clicked[imp.user_key] += int(imp.labels.sum())
        history[imp.user_key] = max(history[imp.user_key], len(imp.history), 1)
    keys = sorted(shown)
    shown_arr = np.array([shown[k] for k in keys], dtype=np.float64)
    clicked_arr = np.array([clicked[k] for k in keys], dtype=np.float64)
    history_arr = np.array([history[k] for k in keys], dtype=np.float64)
    overall = float(clicked_arr.sum() / shown_arr.sum())
    ctr = (clicked_arr + smoothing * overall) / (shown_arr + smoothing)
    activity = np.clip(history_arr / history_arr.mean(), 0.1, 5.0)
    index = {key: i for i, key in enumerate(keys)}
    reader_of = np.array([index[imp.user_key] for imp in impressions])
    return ReaderPool(ctr, activity / activity.mean(), tuple(impressions), reader_of, overall)


# --- A/B: peeking, sequential vs fixed, CUPED ------------------------------------------------


def simulate_ab(
    readers: ReaderPool,
    effect: float = 0.10,
    days: int = 14,
    runs: int = 300,
    *,
    n_readers: int = 2000,
    feeds_per_day: float = 1.0,
    feed_size: int = 10,
    pre_days: int = 14,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """A/A false-positive rates and power under daily looks.

    Every run draws `n_readers` real readers (with replacement), assigns each to an arm by a coin
    flip and simulates `days` days: a reader opens Poisson(activity * feeds_per_day) feeds a day
    of `feed_size` items and clicks each with their CTR, times (1 + effect) in the treatment arm.
    The pre-period is `pre_days` more days of the same reader without treatment, so pre- and
    in-experiment clicks correlate through the reader's real CTR and activity. Every day the
    cumulative data of readers with at least one feed is analysed with each of `AB_VARIANTS`.
    A run counts as significant by day d if any look up to day d was significant (peeking).
    """
    rng = np.random.default_rng(seed)
    significant_aa = _ab_runs(
        readers,
        0.0,
        days,
        runs,
        n_readers,
        feeds_per_day,
        feed_size,
        pre_days,
        alpha,
        rng,
        progress,
        "A/A",
    )
    significant_power = _ab_runs(
        readers,
        effect,
        days,
        runs,
        n_readers,
        feeds_per_day,
        feed_size,
        pre_days,
        alpha,
        rng,
        progress,
        f"A/B +{effect:.0%}",
    )
    reductions = significant_power.pop("_cuped_reduction")
    significant_aa.pop("_cuped_reduction")

    def summary(significant: dict[str, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for variant, sig in significant.items():
            ever = np.maximum.accumulate(sig, axis=1)  # (runs, days) significant on some day <= d
            first = np.where(ever[:, -1], np.argmax(sig, axis=1) + 1, 0)
            out[variant] = {
                "peeking_daily": float(ever[:, -1].mean()),
                "final_day_only": float(sig[:, -1].mean()),
                "by_day": ever.mean(axis=0).tolist(),
                "median_day_of_first_detection": float(np.median(first[first > 0]))
                if np.any(first > 0)
                else None,
            }
        return out

    return {
        "config": {
            "effect": effect,
            "days": days,
            "runs": runs,
            "n_readers": n_readers,
            "feeds_per_day": feeds_per_day,
            "feed_size": feed_size,
            "pre_days": pre_days,
            "alpha": alpha,
            "seed": seed,
            "reader_pool": readers.readers,
        },
        "false_positive_rate": summary(significant_aa),
        "power": summary(significant_power),
        "cuped_variance_reduction_final_day": float(np.mean(reductions)) if reductions else None,
        "monte_carlo_se_at_alpha": float(np.sqrt(alpha * (1 - alpha) / runs)),
    }


def _ab_runs(
    readers: ReaderPool,
    effect: float,
    days: int,
    runs: int,
    n_readers: int,
    feeds_per_day: float,
    feed_size: int,
    pre_days: int,
    alpha: float,
    rng: np.random.Generator,
    progress: bool,
    label: str,
) -> dict[str, Any]:
    significant = {variant: np.zeros((runs, days), dtype=bool) for variant in AB_VARIANTS}
    reductions: list[float] = []
    for run in tqdm(range(runs), desc=label, disable=not progress, leave=False):
        pick = rng.integers(readers.readers, size=n_readers)
        ctr, rate = readers.ctr[pick], readers.activity[pick] * feeds_per_day
        treated = rng.random(n_readers) < 0.5
        p_click = np.minimum(ctr * np.where(treated, 1.0 + effect, 1.0), 1.0)
        feeds = rng.poisson(rate[:, None], size=(n_readers, days))  # (n, days)
        clicks = rng.binomial(feeds * feed_size, p_click[:, None])  # (n, days)
        pre_clicks = rng.binomial(rng.poisson(rate * pre_days) * feed_size, ctr).astype(float)
        cum_feeds, cum_clicks = feeds.cumsum(axis=1), clicks.cumsum(axis=1)
        for day in range(days):
            seen = cum_feeds[:, day] > 0
            arms = [
                ArmSample(
                    name,
                    feeds=cum_feeds[mask, day],
                    exposures=cum_feeds[mask, day] * feed_size,
                    clicks=cum_clicks[mask, day],
                    pre_clicks=pre_clicks[mask],
                )
                for name, mask in (("control", seen & ~treated), ("treatment", seen & treated))
            ]
            for variant, options in AB_VARIANTS.items():
                result = analyze(arms[0], arms[1], alpha=alpha, **options).clicks_per_feed
                significant[variant][run, day] = result.significant
                if day == days - 1 and variant == "fixed+cuped":
                    reductions.append(result.cuped_variance_reduction or 0.0)
    return {**significant, "_cuped_reduction": reductions}


# --- Interleaving vs A/B -----------------------------------------------------------------------


def simulate_interleaving(
    readers: ReaderPool,
    promote_prob: float = 0.10,
    *,
    k: int = 10,
    relevant_click: float = 0.6,
    other_click: float = 0.02,
    reps: int = 5,
    alpha: float = 0.05,
    power: float = 0.80,
    check_runs: int = 500,
    seed: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Readers needed to detect a known ranker difference: A/B on clicks per feed vs
    team-draft interleaving, each at `power` and two-sided `alpha`.

    Ranker A orders a real impression's candidates at random; ranker B is A with each truly
    clicked candidate moved to the top with probability `promote_prob`. Clicks follow a
    position-based model: the item at rank r (0-based) is examined with probability 1 / (r + 1)
    and clicked with probability `relevant_click` if the reader really clicked it, else
    `other_click`. Each reader is one feed (MIND readers rarely return). Both sample sizes come
    from the normal approximation of their own test (Welch on clicks per feed; the sign test on
    non-tied interleaving credits), then are checked by simulating `check_runs` experiments of
    that size with the real tests (`analyze`, `preference_test`).
    """
    rng = np.random.default_rng(seed)
    examine = 1.0 / np.arange(1, k + 1)
    clicks_a: list[int] = []
    clicks_b: list[int] = []
    outcomes: list[str] = []

    # readers differ in how much they click: their real CTR relative to the mean reader's
    propensity = np.clip(readers.ctr / readers.ctr.mean(), 0.2, 5.0)

    def clicks_on(shown: np.ndarray, relevant: np.ndarray, reader: int) -> np.ndarray:
        attract = np.where(relevant[shown], relevant_click, other_click) * propensity[reader]
        return rng.random(len(shown)) < examine[: len(shown)] * np.minimum(attract, 1.0)

    for _ in tqdm(range(reps), desc="interleaving", disable=not progress, leave=False):
        for imp, reader in zip(readers.impressions, readers.reader_of_impression, strict=True):
            relevant = imp.labels > 0
            ranking_a = rng.permutation(len(relevant))
            promoted = relevant[ranking_a] & (rng.random(len(relevant)) < promote_prob)
            ranking_b = np.concatenate([ranking_a[promoted], ranking_a[~promoted]])
            clicks_a.append(int(clicks_on(ranking_a[:k], relevant, reader).sum()))
            clicks_b.append(int(clicks_on(ranking_b[:k], relevant, reader).sum()))
            mixed = team_draft(ranking_a.tolist(), ranking_b.tolist(), k, rng)
            hit = clicks_on(np.array(mixed.items, dtype=int), relevant, reader)
            outcomes.append(credit(mixed, [i for i, h in zip(mixed.items, hit, strict=True) if h]))

    per_feed_a, per_feed_b = np.array(clicks_a, float), np.array(clicks_b, float)
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    delta = per_feed_b.mean() - per_feed_a.mean()
    per_arm = z**2 * (per_feed_a.var(ddof=1) + per_feed_b.var(ddof=1)) / delta**2
    ab_readers = int(np.ceil(2 * per_arm))

    shares = {team: outcomes.count(team) / len(outcomes) for team in ("a", "b", "tie")}
    p_b = shares["b"] / (shares["a"] + shares["b"])
    z_alpha, z_power = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    decided = ((z_alpha * 0.5 + z_power * np.sqrt(p_b * (1 - p_b))) / (p_b - 0.5)) ** 2
    interleaving_readers = int(np.ceil(decided / (1 - shares["tie"])))

    ab_power = _check_ab_power(per_feed_a, per_feed_b, ab_readers, alpha, check_runs, rng)
    probabilities = [shares["a"], shares["b"], shares["tie"]]
    wins = rng.multinomial(interleaving_readers, probabilities, size=check_runs)
    il_power = float(np.mean([preference_test(int(a), int(b)) < alpha for a, b, _ in wins]))
    return {
        "config": {
            "promote_prob": promote_prob,
            "k": k,
            "relevant_click": relevant_click,
            "other_click": other_click,
            "reps": reps,
            "alpha": alpha,
            "power": power,
            "impressions": len(readers.impressions),
            "seed": seed,
        },
        "clicks_per_feed": {"a": float(per_feed_a.mean()), "b": float(per_feed_b.mean())},
        "relative_uplift": float(delta / per_feed_a.mean()),
        "interleaving_outcomes": shares,
        "b_win_share_of_decided": float(p_b),
        "readers_needed": {"ab": ab_readers, "interleaving": interleaving_readers},
        "ratio_ab_over_interleaving": float(ab_readers / interleaving_readers),
        "simulated_power_at_that_size": {"ab": ab_power, "interleaving": il_power},
    }


def _check_ab_power(
    per_feed_a: np.ndarray,
    per_feed_b: np.ndarray,
    total_readers: int,
    alpha: float,
    check_runs: int,
    rng: np.random.Generator,
) -> float:
    """Share of `check_runs` fixed-horizon A/B tests of `total_readers` (resampled from the
    simulated feeds) that reject; should be close to the target power."""
    per_arm = max(total_readers // 2, 2)
    detected = 0
    for _ in range(check_runs):
        arms = [
            ArmSample(name, np.ones(per_arm), np.ones(per_arm), rng.choice(values, per_arm))
            for name, values in (("a", per_feed_a), ("b", per_feed_b))
        ]
        detected += analyze(
            arms[0], arms[1], alpha=alpha, sequential=False, cuped=False
        ).significant
    return detected / check_runs


# --- Thompson bandit ---------------------------------------------------------------------------


def simulate_bandit(
    true_ctrs: Sequence[float] = (0.050, 0.055, 0.060, 0.070),
    impressions: int = 20_000,
    runs: int = 200,
    *,
    draws: int = 4000,
    curve_points: int = 100,
    seed: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Thompson sampling vs a uniform A/B split over headline variants with known CTRs.

    Regret is the expected clicks lost against always showing the best variant:
    sum over impressions of (best CTR - CTR of the variant shown). `runs` bandits step together.
    """
    ctrs = np.asarray(true_ctrs, dtype=np.float64)
    if ctrs.ndim != 1 or len(ctrs) < 2 or np.any((ctrs < 0) | (ctrs > 1)):
        raise ValueError("true_ctrs needs at least two click rates in [0, 1]")
    rng = np.random.default_rng(seed)
    best = int(np.argmax(ctrs))
    sampler = ThompsonSampler()
    rows = np.arange(runs)

    def play(choose: Callable[[np.ndarray, np.ndarray], np.ndarray], label: str) -> dict:
        shown = np.zeros((runs, len(ctrs)))
        clicked = np.zeros((runs, len(ctrs)))
        regret = np.zeros(impressions)  # mean over runs, per impression
        for t in tqdm(range(impressions), desc=label, disable=not progress, leave=False):
            arm = choose(shown, clicked)
            shown[rows, arm] += 1
            clicked[rows, arm] += rng.random(runs) < ctrs[arm]
            regret[t] = (ctrs[best] - ctrs[arm]).mean()
        curve = np.cumsum(regret)
        final = sampler.p_best_batch(shown, clicked, rng, draws)[:, best]
        points = np.unique(np.linspace(0, impressions - 1, curve_points).astype(int))
        return {
            "cumulative_regret": float(curve[-1]),
            "clicks_lost_share": float(curve[-1] / (ctrs[best] * impressions)),
            "best_variant_share_of_impressions": float(shown[:, best].mean() / impressions),
            "share_runs_p_best_above_0.95": float((final > 0.95).mean()),
            "mean_final_p_best": float(final.mean()),
            "regret_curve": {
                "impression": (points + 1).tolist(),
                "regret": curve[points].tolist(),
            },
        }

    thompson = play(lambda s, c: sampler.choose_batch(s, c, rng), "thompson")
    uniform = play(lambda s, c: rng.integers(len(ctrs), size=runs), "uniform")
    return {
        "config": {
            "true_ctrs": ctrs.tolist(),
            "impressions": impressions,
            "runs": runs,
            "draws": draws,
            "seed": seed,
        },
        "best_variant": best,
        "always_best_clicks": float(ctrs[best] * impressions),
        "thompson": thompson,
        "uniform": uniform,
        "regret_ratio_thompson_over_uniform": thompson["cumulative_regret"]
        / uniform["cumulative_regret"],
    }


# --- Running the parts ---------------------------------------------------------------------------


@dataclass
class LoopSimConfig:
    """What a run simulates and where it writes. Defaults keep a run within a few minutes
    on 2 cores."""

    data: Path = DEFAULT_DATA
    out_dir: Path = Path("models/reports")
    seed: int = 0
    progress: bool = True
    ab: dict[str, Any] = field(default_factory=dict)  # keyword arguments of simulate_ab
    interleaving: dict[str, Any] = field(default_factory=dict)
    bandit: dict[str, Any] = field(default_factory=dict)
    retrain: dict[str, Any] = field(default_factory=dict)  # fields of RetrainSimConfig


def simulate_retrain(config: LoopSimConfig, _readers: ReaderPool) -> dict[str, Any]:
    """Part (a), against the live service: `evaluation.loop_retrain`."""
    from evaluation.loop_retrain import RetrainSimConfig
    from evaluation.loop_retrain import run as run_retrain

    options = {"data": config.data, "seed": config.seed, "progress": config.progress}
    return run_retrain(RetrainSimConfig(**{**options, **config.retrain}))


Part = Callable[[LoopSimConfig, ReaderPool], dict[str, Any]]
PARTS: dict[str, Part] = {
    "retrain": simulate_retrain,
    "ab": lambda c, r: simulate_ab(r, seed=c.seed, progress=c.progress, **c.ab),
    "interleaving": lambda c, r: simulate_interleaving(
        r, seed=c.seed + 1, progress=c.progress, **c.interleaving
    ),
    "bandit": lambda c, r: simulate_bandit(seed=c.seed + 2, progress=c.progress, **c.bandit),
}


def run(config: LoopSimConfig | None = None, parts: Sequence[str] = tuple(PARTS)) -> dict:
    """Run the named parts, write `loop_sim.json` and `loop_sim.png` into `config.out_dir`,
    and return the report."""
    config = config or LoopSimConfig()
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}: choose from {sorted(PARTS)}")
    readers = load_readers(config.data)
    report: dict[str, Any] = {"data": str(config.data), "readers": readers.readers, "parts": {}}
    for name in parts:
        started = time.perf_counter()
        report["parts"][name] = PARTS[name](config, readers)
        report["parts"][name]["seconds"] = round(time.perf_counter() - started, 1)
        log.info("loop_sim part %s took %.1f s", name, report["parts"][name]["seconds"])
    report = to_json(report)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "loop_sim.json").write_text(json.dumps(report, indent=2))
    plot(report, out_dir / "loop_sim.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """A/A false-positive rate by day (sequential vs fixed, peeking) and bandit regret curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    panels = [name for name in ("ab", "bandit") if name in parts]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6 * max(len(panels), 1), 4))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, panels, strict=False):
        if name == "ab":
            ab = parts["ab"]
            for variant, rates in ab["false_positive_rate"].items():
                days = np.arange(1, len(rates["by_day"]) + 1)
                style = "--" if "cuped" in variant else "-"
                ax.plot(days, rates["by_day"], style, label=variant)
            ax.axhline(ab["config"]["alpha"], color="grey", lw=0.8, label="alpha")
            ax.set(
                xlabel="day (looked at daily)",
                ylabel="A/A runs significant by then",
                title="False positives under peeking",
            )
        else:
            bandit = parts["bandit"]
            for arm in ("thompson", "uniform"):
                curve = bandit[arm]["regret_curve"]
                ax.plot(curve["impression"], curve["regret"], label=arm)
            ax.set(
                xlabel="impressions",
                ylabel="expected clicks lost vs best",
                title=f"Headline bandit regret, CTRs {bandit['config']['true_ctrs']}",
            )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    """The report's headline numbers as markdown tables."""
    parts, lines = report["parts"], []
    if "retrain" in parts:
        from evaluation.loop_retrain import format_table

        lines += ["### Retraining from the log (against the live service)", ""]
        lines += [format_table(parts["retrain"]), ""]
    if "ab" in parts:
        ab = parts["ab"]
        c = ab["config"]
        lines += [
            f"### A/B, {c['n_readers']} readers, {c['days']} days, {c['runs']} runs each, "
            f"effect +{c['effect']:.0%} CTR",
            "",
            "| test | A/A FPR peeking daily | A/A FPR final day | power (stop at first "
            "significant day) | power (final day) |",
            "|---|---|---|---|---|",
        ]
        for variant in ab["false_positive_rate"]:
            fpr, pw = ab["false_positive_rate"][variant], ab["power"][variant]
            lines.append(
                f"| {variant} | {fpr['peeking_daily']:.3f} | {fpr['final_day_only']:.3f} | "
                f"{pw['peeking_daily']:.3f} | {pw['final_day_only']:.3f} |"
            )
        lines += [
            "",
            f"CUPED variance reduction (final day): {ab['cuped_variance_reduction_final_day']:.1%}"
            f"; Monte Carlo SE at alpha: {ab['monte_carlo_se_at_alpha']:.3f}",
            "",
        ]
    if "interleaving" in parts:
        il = parts["interleaving"]
        needed, check = il["readers_needed"], il["simulated_power_at_that_size"]
        lines += [
            f"### Rankers differing by promote_prob={il['config']['promote_prob']} "
            f"(+{il['relative_uplift']:.1%} clicks per feed)",
            "",
            "| method | readers for 80% power | simulated power at that size |",
            "|---|---|---|",
            f"| A/B clicks per feed | {needed['ab']} | {check['ab']:.2f} |",
            f"| team-draft interleaving | {needed['interleaving']} | {check['interleaving']:.2f} |",
            "",
            f"A/B needs {il['ratio_ab_over_interleaving']:.1f}x the readers.",
            "",
        ]
    if "bandit" in parts:
        bandit = parts["bandit"]
        c = bandit["config"]
        lines += [
            f"### Headline bandit, CTRs {c['true_ctrs']}, {c['impressions']} impressions, "
            f"{c['runs']} runs",
            "",
            "| allocation | regret (clicks lost) | share of clicks lost | impressions to best "
            "| runs with p_best(best) > 0.95 |",
            "|---|---|---|---|---|",
        ]
        for arm in ("thompson", "uniform"):
            b = bandit[arm]
            lines.append(
                f"| {arm} | {b['cumulative_regret']:.1f} | {b['clicks_lost_share']:.2%} | "
                f"{b['best_variant_share_of_impressions']:.2%} | "
                f"{b['share_runs_p_best_above_0.95']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=Path("models/reports"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = LoopSimConfig(data=args.data, out_dir=args.out_dir, seed=args.seed)
    started = time.perf_counter()
    report = run(config, parts=[p for p in args.parts.split(",") if p])
    print(markdown(report))
    print(f"total {time.perf_counter() - started:.0f} s; wrote {config.out_dir}/loop_sim.json")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
