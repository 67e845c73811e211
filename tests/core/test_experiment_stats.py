"""A/B statistics against hand-computed delta-method intervals and measurable properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from core.experiment_stats import ArmSample, analyze, analyze_all, ratio_interval, to_json

# Six readers per arm: feeds, clicks (exposures = 10 items per feed).
CONTROL_FEEDS = np.array([1, 2, 3, 1, 4, 2])
CONTROL_CLICKS = np.array([0, 1, 2, 1, 2, 0])
TREATMENT_FEEDS = np.array([2, 1, 3, 2, 2, 4])
TREATMENT_CLICKS = np.array([2, 1, 3, 1, 2, 4])


def arm(name: str, feeds: np.ndarray, clicks: np.ndarray, pre: np.ndarray | None = None):
    return ArmSample(name, feeds, feeds * 10, clicks, pre)


def delta_method(clicks: np.ndarray, feeds: np.ndarray) -> tuple[float, float]:
    """Ratio and its delta-method variance, written out: Var(c - R f) / (n mean(f)^2)."""
    ratio = clicks.sum() / feeds.sum()
    residual = clicks - ratio * feeds
    return ratio, residual.var(ddof=1) / (len(feeds) * feeds.mean() ** 2)


def simulated_arm(name: str, rng: np.random.Generator, n: int, lift: float, ctr: np.ndarray):
    feeds = rng.poisson(5, n) + 1
    clicks = rng.binomial(feeds * 10, np.minimum(ctr * lift, 1))
    pre = rng.binomial((rng.poisson(5, n) + 1) * 10, ctr)
    return ArmSample(name, feeds, feeds * 10, clicks, pre)


def test_fixed_interval_and_p_value_match_a_hand_computed_welch_delta_method_test():
    result = analyze(
        arm("control", CONTROL_FEEDS, CONTROL_CLICKS),
        arm("treatment", TREATMENT_FEEDS, TREATMENT_CLICKS),
        sequential=False,
        cuped=False,
    )
    r_a, v_a = delta_method(CONTROL_CLICKS, CONTROL_FEEDS)
    r_b, v_b = delta_method(TREATMENT_CLICKS, TREATMENT_FEEDS)
    n = len(CONTROL_FEEDS)
    dof = (v_a + v_b) ** 2 / (v_a**2 / (n - 1) + v_b**2 / (n - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, dof) * math.sqrt(v_a + v_b)
    p_value = 2 * stats.t.sf(abs(r_b - r_a) / math.sqrt(v_a + v_b), dof)

    cpf = result.clicks_per_feed
    assert cpf.method == "fixed" and cpf.error is None
    assert cpf.difference == pytest.approx(r_b - r_a)
    assert cpf.ci == pytest.approx((r_b - r_a - half, r_b - r_a + half))
    assert cpf.p_value == pytest.approx(p_value)
    assert cpf.significant == (p_value < 0.05)
    assert result.control.clicks_per_feed == pytest.approx(6 / 13)
    assert result.treatment.ctr == pytest.approx(13 / 140)


def test_per_arm_interval_is_the_normal_delta_method_interval():
    value, (low, high) = ratio_interval(CONTROL_CLICKS, CONTROL_FEEDS)
    ratio, variance = delta_method(CONTROL_CLICKS, CONTROL_FEEDS)
    assert value == pytest.approx(ratio)
    assert (high - low) / 2 == pytest.approx(1.959964 * math.sqrt(variance), rel=1e-5)


def test_a_clear_difference_is_significant_and_an_a_a_is_not():
    rng = np.random.default_rng(7)
    ctr = rng.beta(2, 18, 3000)
    control = simulated_arm("control", rng, 1500, 1.0, ctr[:1500])
    better = simulated_arm("treatment", rng, 1500, 1.3, ctr[1500:])
    same = simulated_arm("treatment", rng, 1500, 1.0, ctr[1500:])
    assert analyze(control, better).significant
    aa = analyze(control, same)
    assert not aa.significant
    assert aa.clicks_per_feed.ci[0] < 0 < aa.clicks_per_feed.ci[1]


def test_cuped_reduces_the_variance_when_pre_and_post_clicks_correlate():
    rng = np.random.default_rng(3)
    ctr = rng.beta(2, 18, 2000)  # readers differ a lot: the pre-period predicts the experiment
    control = simulated_arm("control", rng, 1000, 1.0, ctr[:1000])
    treatment = simulated_arm("treatment", rng, 1000, 1.1, ctr[1000:])
    plain = analyze(control, treatment, sequential=False, cuped=False).clicks_per_feed
    adjusted = analyze(control, treatment, sequential=False, cuped=True).clicks_per_feed
    assert adjusted.cuped and adjusted.note is None
    assert adjusted.cuped_variance_reduction > 0.3
    width = adjusted.ci[1] - adjusted.ci[0]
    assert width < (plain.ci[1] - plain.ci[0]) * math.sqrt(1 - 0.3)
    assert adjusted.difference == pytest.approx(
        plain.difference, abs=2 * (plain.ci[1] - plain.ci[0])
    )


def test_cuped_falls_back_without_pre_period_variance_or_data():
    control = arm("control", CONTROL_FEEDS, CONTROL_CLICKS, np.full(6, 3.0))
    treatment = arm("treatment", TREATMENT_FEEDS, TREATMENT_CLICKS, np.full(6, 3.0))
    flat = analyze(control, treatment).clicks_per_feed
    plain = analyze(control, treatment, cuped=False).clicks_per_feed
    assert not flat.cuped and "no variance" in flat.note
    assert flat.ci == pytest.approx(plain.ci)
    missing = analyze(
        arm("c", CONTROL_FEEDS, CONTROL_CLICKS), arm("t", TREATMENT_FEEDS, TREATMENT_CLICKS)
    )
    assert not missing.clicks_per_feed.cuped and "no pre-period" in missing.clicks_per_feed.note


def test_the_sequential_interval_is_wider_than_the_fixed_one_on_the_same_data():
    rng = np.random.default_rng(5)
    ctr = rng.beta(2, 18, 1000)
    control = simulated_arm("control", rng, 500, 1.0, ctr[:500])
    treatment = simulated_arm("treatment", rng, 500, 1.1, ctr[500:])
    seq = analyze(control, treatment, sequential=True).clicks_per_feed
    fixed = analyze(control, treatment, sequential=False).clicks_per_feed
    assert seq.method == "sequential" and fixed.method == "fixed"
    assert seq.difference == pytest.approx(fixed.difference)
    assert seq.ci[1] - seq.ci[0] > 1.5 * (fixed.ci[1] - fixed.ci[0])
    assert seq.p_value > fixed.p_value


@pytest.mark.parametrize(
    ("control", "treatment", "message"),
    [
        (
            arm("c", np.array([]), np.array([])),
            arm("t", TREATMENT_FEEDS, TREATMENT_CLICKS),
            "2 readers",
        ),
        (
            arm("c", np.array([1]), np.array([1])),
            arm("t", TREATMENT_FEEDS, TREATMENT_CLICKS),
            "2 readers",
        ),
        (
            arm("c", np.zeros(3), np.zeros(3)),
            arm("t", TREATMENT_FEEDS, TREATMENT_CLICKS),
            "no feeds",
        ),
        (
            arm("c", np.ones(4), np.zeros(4)),
            arm("t", TREATMENT_FEEDS, TREATMENT_CLICKS),
            "no clicks",
        ),
        (arm("c", np.ones(4), np.ones(4)), arm("t", np.ones(4), np.ones(4)), "variance"),
    ],
)
def test_degenerate_inputs_give_an_error_and_json_without_nan(control, treatment, message):
    result = analyze(control, treatment)
    assert message in result.clicks_per_feed.error
    assert result.clicks_per_feed.difference is None and not result.significant
    json.dumps(result.to_json(), allow_nan=False)


def test_to_json_rounds_and_drops_non_finite_floats():
    assert to_json(
        {"a": 0.123456789, "b": float("nan"), "c": [np.float32(np.inf), np.int64(3)]}
    ) == {
        "a": 0.123457,
        "b": None,
        "c": [None, 3],
    }


def test_mismatched_arrays_are_refused_with_a_message():
    with pytest.raises(ValueError, match="one entry per reader"):
        ArmSample("c", np.ones(3), np.ones(3), np.ones(2))


def test_several_treatments_are_bonferroni_corrected():
    control = arm("control", CONTROL_FEEDS, CONTROL_CLICKS)
    treatments = [
        arm("t1", TREATMENT_FEEDS, TREATMENT_CLICKS),
        arm("t2", CONTROL_FEEDS, CONTROL_CLICKS),
    ]
    results = analyze_all(control, treatments, alpha=0.05, sequential=False)
    single = analyze(control, treatments[0], alpha=0.025, sequential=False)
    assert [r.alpha for r in results] == [0.025, 0.025]
    assert results[0].clicks_per_feed.ci == pytest.approx(single.clicks_per_feed.ci)
