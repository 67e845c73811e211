"""The loop simulations on real MIND readers, small and seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.loop_sim import (
    LoopSimConfig,
    load_readers,
    markdown,
    run,
    simulate_ab,
    simulate_bandit,
    simulate_interleaving,
)
from tests.conftest import data_path


@pytest.fixture(scope="module")
def readers():
    return load_readers(data_path("mind_small_dev_impressions"))


def test_readers_carry_their_real_click_rates_and_activity(readers):
    assert readers.readers > 1500  # user keys rarely repeat in MIND-small dev
    assert np.all((readers.ctr > 0) & (readers.ctr < 1))
    assert readers.activity.mean() == pytest.approx(1.0)
    assert readers.ctr.std() > 0.02  # readers really differ: what CUPED exploits
    assert len(readers.reader_of_impression) == len(readers.impressions)


def test_sequential_test_keeps_the_a_a_false_positive_rate_under_daily_looks(readers):
    report = simulate_ab(readers, effect=0.3, days=6, runs=60, n_readers=600, progress=False)
    fpr, power = report["false_positive_rate"], report["power"]
    assert fpr["sequential"]["peeking_daily"] <= 0.1
    assert fpr["sequential+cuped"]["peeking_daily"] <= 0.1
    assert fpr["fixed"]["peeking_daily"] >= fpr["sequential"]["peeking_daily"]
    assert np.all(np.diff(fpr["fixed"]["by_day"]) >= 0)  # "significant by day d" only grows
    assert power["fixed+cuped"]["final_day_only"] > 0.5  # a +30% CTR uplift is found
    assert power["sequential+cuped"]["peeking_daily"] >= power["sequential"]["peeking_daily"]
    assert report["cuped_variance_reduction_final_day"] > 0.1


def test_interleaving_needs_fewer_readers_than_ab_for_the_same_ranker_difference(readers):
    report = simulate_interleaving(
        readers, promote_prob=0.25, reps=1, check_runs=50, progress=False
    )
    assert report["clicks_per_feed"]["b"] > report["clicks_per_feed"]["a"]
    assert report["b_win_share_of_decided"] > 0.5
    needed = report["readers_needed"]
    assert needed["ab"] > needed["interleaving"] > 0
    assert report["ratio_ab_over_interleaving"] > 1.5


def test_thompson_bandit_loses_fewer_clicks_than_a_uniform_split():
    report = simulate_bandit((0.03, 0.06, 0.09), impressions=2000, runs=40, progress=False)
    thompson, uniform = report["thompson"], report["uniform"]
    assert thompson["cumulative_regret"] < 0.6 * uniform["cumulative_regret"]
    assert thompson["best_variant_share_of_impressions"] > 0.5
    assert thompson["mean_final_p_best"] > 0.7
    assert uniform["best_variant_share_of_impressions"] == pytest.approx(1 / 3, abs=0.03)


def test_run_writes_json_without_nan_and_a_figure(tmp_path):
    config = LoopSimConfig(
        data=data_path("mind_small_dev_impressions"),
        out_dir=tmp_path,
        progress=False,
        ab={"days": 3, "runs": 5, "n_readers": 300},
        interleaving={"reps": 1, "check_runs": 10},
        bandit={"impressions": 300, "runs": 10},
    )
    report = run(config, parts=["ab", "interleaving", "bandit"])  # retrain: test_loop_retrain
    written = json.loads((tmp_path / "loop_sim.json").read_text())
    assert set(written["parts"]) == {"ab", "interleaving", "bandit"}
    json.dumps(written, allow_nan=False)
    assert (tmp_path / "loop_sim.png").stat().st_size > 1000
    assert "| sequential |" in markdown(report)
    with pytest.raises(ValueError, match="unknown parts"):
        run(config, parts=["nope"])
