"""The statistics of A/B experiments on the feed: pure functions over per-reader arrays, no I/O.

The unit of randomisation is the reader, but the metrics are ratios over feeds and items
(clicks per feed, CTR = clicks / exposures). A reader's feeds are not independent of each other,
so each metric is a ratio of two per-reader sums and its variance comes from the delta method
(gbstats' `RatioStatistic`), never from treating feeds or items as independent trials — that
would understate the variance and make every experiment look significant.

Defaults, and why:
- `sequential=True`: the studio shows every experiment's result every day, and people act on
  what they see. A fixed-horizon t-test looked at daily rejects a true null far more often than
  `alpha` (`evaluation.loop_sim` measures it). gbstats' sequential test is an always-valid
  confidence sequence (Waudby-Smith et al. 2023): its false-positive rate stays below `alpha`
  however often it is looked at, at the price of a wider interval at any single look.
  `sequential=False` is the classic test for a horizon fixed in advance and looked at once.
- `sequential_tuning=5000`: the total number of readers at which the confidence sequence is
  tightest (gbstats' default); a newsroom experiment has a few thousand readers.
- `cuped=True`: CUPED (Deng et al. 2013) regresses out each reader's pre-experiment clicks.
  Readers differ a lot in how much they click, and that difference is most of the variance of
  clicks per feed; removing it narrows the interval at no cost in bias (assignment is random,
  so the pre-period is independent of the arm). For a ratio metric the adjustment is done on
  the delta-method linearisation `R + (clicks - R * feeds) / mean(feeds)`, whose mean is R and
  whose variance is the delta-method variance, so gbstats' `RegressionAdjustedStatistic` and
  its pooled `theta` apply unchanged. It falls back to the unadjusted test, and says why, when
  there is no pre-period, when the pre-period has no variance, or when it does not reduce the
  variance.
- `alpha=0.05`, two-sided, absolute difference (the studio shows "+0.04 clicks per feed").

Degenerate inputs (an empty arm, one reader, no feeds, no variance, a control with no clicks)
give a result whose `error` says what is missing and whose numbers are None; nothing raises and
nothing is NaN. `to_json` turns any result into JSON-ready values (floats rounded, no NaN).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from gbstats.frequentist.tests import (
    FrequentistConfig,
    FrequentistTestResult,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.messages import BASELINE_VARIATION_ZERO_MESSAGE, ZERO_NEGATIVE_VARIANCE_MESSAGE
from gbstats.models.statistics import (
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)

Method = Literal["sequential", "fixed"]
_GBSTATS_ERRORS = {
    ZERO_NEGATIVE_VARIANCE_MESSAGE: "an arm has no variance yet (all readers alike): wait for data",
    BASELINE_VARIATION_ZERO_MESSAGE: "the control's value is zero: no baseline to compare with",
}
MetricName = Literal["clicks_per_feed", "ctr"]
Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class ArmSample:
    """One arm's readers, one entry per reader who saw at least one feed.

    `pre_clicks` are the reader's clicks in a period before the experiment started (the CUPED
    covariate); None when there is no pre-period.
    """

    name: str
    feeds: np.ndarray  # (n,) feeds served
    exposures: np.ndarray  # (n,) items shown
    clicks: np.ndarray  # (n,) clicks on shown items
    pre_clicks: np.ndarray | None = None  # (n,)

    def __post_init__(self) -> None:
        columns = {"feeds": self.feeds, "exposures": self.exposures, "clicks": self.clicks}
        if self.pre_clicks is not None:
            columns["pre_clicks"] = self.pre_clicks
        n = len(np.asarray(self.feeds))
        for column, values in columns.items():
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1 or len(array) != n:
                raise ValueError(
                    f"arm {self.name!r}: {column} must be a 1-D array with one entry per reader "
                    f"({n} readers from feeds), got shape {array.shape}"
                )
            if not np.all(np.isfinite(array)) or np.any(array < 0):
                raise ValueError(f"arm {self.name!r}: {column} must be finite and non-negative")
            # frozen: the arrays are normalised to float64 once, here
            object.__setattr__(self, column, array)

    @property
    def readers(self) -> int:
        return len(self.feeds)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """One arm's totals and per-arm metrics with their (1 - alpha) delta-method intervals."""

    name: str
    readers: int
    feeds: int
    exposures: int
    clicks: int
    clicks_per_feed: float | None
    clicks_per_feed_ci: Interval | None
    ctr: float | None
    ctr_ci: Interval | None


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """Treatment minus control on one ratio metric."""

    metric: MetricName
    method: Method
    difference: float | None  # absolute: treatment - control
    ci: Interval | None
    relative_difference: float | None  # difference / control value
    p_value: float | None
    significant: bool
    cuped: bool  # whether the reported numbers are CUPED-adjusted
    cuped_variance_reduction: float | None  # 1 - Var(adjusted) / Var(unadjusted)
    note: str | None = None  # why CUPED was not applied, when asked for
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ArmComparison:
    """A treatment against the control: the primary metric is clicks per feed, CTR is reported."""

    control: ArmSummary
    treatment: ArmSummary
    clicks_per_feed: MetricComparison
    ctr: MetricComparison
    alpha: float

    @property
    def significant(self) -> bool:
        return self.clicks_per_feed.significant

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def analyze(
    control: ArmSample,
    treatment: ArmSample,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    cuped: bool = True,
    sequential_tuning: float = 5000.0,
) -> ArmComparison:
    """Compare one treatment with the control (see the module docstring for the defaults)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    options = {
        "alpha": alpha,
        "sequential": sequential,
        "cuped": cuped,
        "sequential_tuning": sequential_tuning,
    }
    return ArmComparison(
        control=summarize(control, alpha=alpha),
        treatment=summarize(treatment, alpha=alpha),
        clicks_per_feed=compare_ratio(
            "clicks_per_feed",
            (control.clicks, control.feeds, control.pre_clicks),
            (treatment.clicks, treatment.feeds, treatment.pre_clicks),
            **options,
        ),
        ctr=compare_ratio(
            "ctr",
            (control.clicks, control.exposures, control.pre_clicks),
            (treatment.clicks, treatment.exposures, treatment.pre_clicks),
            **options,
        ),
        alpha=alpha,
    )


def analyze_all(
    control: ArmSample,
    treatments: Sequence[ArmSample],
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    cuped: bool = True,
    sequential_tuning: float = 5000.0,
) -> list[ArmComparison]:
    """Every treatment against the control, Bonferroni-corrected: with k treatments each
    comparison (and its intervals) uses alpha / k, so the chance of any false positive stays
    below alpha."""
    per_comparison = alpha / max(len(treatments), 1)
    return [
        analyze(
            control,
            treatment,
            alpha=per_comparison,
            sequential=sequential,
            cuped=cuped,
            sequential_tuning=sequential_tuning,
        )
        for treatment in treatments
    ]


def summarize(arm: ArmSample, *, alpha: float = 0.05) -> ArmSummary:
    """Totals and the two ratio metrics of one arm, with (1 - alpha) delta-method intervals."""
    cpf, cpf_ci = ratio_interval(arm.clicks, arm.feeds, alpha=alpha)
    ctr, ctr_ci = ratio_interval(arm.clicks, arm.exposures, alpha=alpha)
    return ArmSummary(
        name=arm.name,
        readers=arm.readers,
        feeds=int(arm.feeds.sum()),
        exposures=int(arm.exposures.sum()),
        clicks=int(arm.clicks.sum()),
        clicks_per_feed=cpf,
        clicks_per_feed_ci=cpf_ci,
        ctr=ctr,
        ctr_ci=ctr_ci,
    )


def ratio_interval(
    numerator: np.ndarray, denominator: np.ndarray, *, alpha: float = 0.05
) -> tuple[float | None, Interval | None]:
    """sum(numerator) / sum(denominator) over readers and its normal (1 - alpha) interval with
    the delta-method variance; (None, None) without a denominator, no interval below 2 readers."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    if len(denominator) == 0 or denominator.sum() <= 0:
        return None, None
    statistic = ratio_statistic(numerator, denominator)
    value = float(statistic.mean)
    if statistic.n < 2:
        return value, None
    z = NormalDist().inv_cdf(1 - alpha / 2)
    half_width = z * math.sqrt(max(statistic.variance, 0.0) / statistic.n)
    return value, (value - half_width, value + half_width)


def ratio_statistic(numerator: np.ndarray, denominator: np.ndarray) -> RatioStatistic:
    """gbstats' delta-method statistic for sum(numerator) / sum(denominator) over readers."""
    return RatioStatistic(
        n=len(numerator),
        m_statistic=mean_statistic(numerator),
        d_statistic=mean_statistic(denominator),
        m_d_sum_of_products=float(np.dot(numerator, denominator)),
    )


def mean_statistic(values: np.ndarray) -> SampleMeanStatistic:
    return SampleMeanStatistic(
        n=len(values), sum=float(values.sum()), sum_squares=float(np.dot(values, values))
    )


def linearised_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Per-reader delta-method linearisation of the ratio R = sum(num) / sum(den):
    `R + (num - R * den) / mean(den)`. Its mean is R and its variance / n is the ratio's
    delta-method variance, so it can stand in for the ratio in a mean-based adjustment."""
    ratio = numerator.sum() / denominator.sum()
    return ratio + (numerator - ratio * denominator) / denominator.mean()


def compare_ratio(
    metric: MetricName,
    control: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    treatment: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    cuped: bool = True,
    sequential_tuning: float = 5000.0,
) -> MetricComparison:
    """Treatment minus control on a per-reader ratio metric; each side is
    (numerator, denominator, pre-period covariate or None), arrays of one entry per reader."""
    method: Method = "sequential" if sequential else "fixed"
    (num_a, den_a, pre_a), (num_b, den_b, pre_b) = control, treatment

    def failed(error: str) -> MetricComparison:
        return MetricComparison(
            metric, method, None, None, None, None, False, False, None, error=error
        )

    if min(len(den_a), len(den_b)) < 2:
        return failed("each arm needs at least 2 readers")
    if den_a.sum() <= 0 or den_b.sum() <= 0:
        return failed(f"an arm has no {'feeds' if metric == 'clicks_per_feed' else 'exposures'}")
    if num_a.sum() <= 0:
        return failed("the control has no clicks yet: no baseline to compare with")

    def run_test(stat_a: Any, stat_b: Any) -> FrequentistTestResult:
        if sequential:
            config = SequentialConfig(
                difference_type="absolute",
                alpha=alpha,
                sequential_tuning_parameter=sequential_tuning,
            )
            return SequentialTwoSidedTTest(stat_a, stat_b, config).compute_result()
        test = TwoSidedTTest(
            stat_a, stat_b, FrequentistConfig(difference_type="absolute", alpha=alpha)
        )
        return test.compute_result()

    plain = run_test(ratio_statistic(num_a, den_a), ratio_statistic(num_b, den_b))
    if plain.error_message or not _finite(plain):
        reason = plain.error_message or "non-finite result"
        return failed(_GBSTATS_ERRORS.get(reason, f"no test possible: {reason}"))

    result, applied, reduction, note = plain, False, None, None
    if cuped:
        if pre_a is None or pre_b is None:
            note = "no pre-period clicks: CUPED not applied"
        elif np.ptp(np.concatenate([pre_a, pre_b])) == 0:
            note = "pre-period clicks have no variance: CUPED not applied"
        else:
            adjusted = run_test(
                _regression_adjusted(num_a, den_a, pre_a), _regression_adjusted(num_b, den_b, pre_b)
            )
            if adjusted.error_message or not _finite(adjusted) or plain.uplift.stddev <= 0:
                note = f"CUPED not applied: {adjusted.error_message or 'no adjusted variance'}"
            else:
                reduction = 1.0 - (adjusted.uplift.stddev / plain.uplift.stddev) ** 2
                if reduction > 0:
                    result, applied = adjusted, True
                else:
                    note = "CUPED did not reduce the variance: unadjusted result reported"

    control_value = float(num_a.sum() / den_a.sum())
    return MetricComparison(
        metric=metric,
        method=method,
        difference=float(result.expected),
        ci=(float(result.ci[0]), float(result.ci[1])),
        relative_difference=float(result.expected) / control_value,
        p_value=float(result.p_value),
        significant=bool(result.p_value < alpha),
        cuped=applied,
        cuped_variance_reduction=reduction,
        note=note,
    )


def _regression_adjusted(
    numerator: np.ndarray, denominator: np.ndarray, pre: np.ndarray
) -> RegressionAdjustedStatistic:
    # theta=0 is a placeholder: gbstats sets the pooled theta of both arms when the test is built
    post = linearised_ratio(numerator, denominator)
    return RegressionAdjustedStatistic(
        n=len(post),
        post_statistic=mean_statistic(post),
        pre_statistic=mean_statistic(pre),
        post_pre_sum_of_products=float(np.dot(post, pre)),
        theta=0.0,
    )


def _finite(result: FrequentistTestResult) -> bool:
    values = [result.expected, result.p_value, *result.ci, result.uplift.stddev]
    return all(math.isfinite(v) for v in values)


def to_json(value: Any, digits: int = 6) -> Any:
    """JSON-ready copy of a result (dataclasses, dicts, sequences, numpy scalars): floats kept to
    `digits` significant digits, NaN and infinities as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json(getattr(value, field.name), digits)
            for field in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        return {str(key): to_json(item, digits) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [to_json(item, digits) for item in value.tolist()]
    if isinstance(value, list | tuple):
        return [to_json(item, digits) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return float(f"{number:.{digits}g}") if math.isfinite(number) else None
    return value
