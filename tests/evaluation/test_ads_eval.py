"""`eval-ads`: the position model and pricing by hand, then the whole job on a real slice of
held-out MIND impressions with the shipped ranking head and the packaged MiniLM."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.cli import app
from core.settings import Settings
from evaluation.ads import (
    HEAD_KINDS,
    POLICIES,
    EvalAdsConfig,
    choose_creatives,
    examination,
    feed_outcome,
    format_table,
    highest_bid_placements,
    main,
    random_placements,
)
from ranking.ad_head import AdHead, CreativeScores
from ranking.auction import AdBid, Placement
from ranking.data import read_impressions, split_of
from ranking.scorer import read_metadata
from tests.conftest import data_path

HELD, SEEN, HISTORY = 80, 20, 3  # impressions in the slice; history items kept per reader


# --- position model and pricing, computed by hand ---------------------------------------------
def test_examination_is_the_dcg_discount():
    np.testing.assert_allclose(
        examination(np.array([0, 1, 2, 6])), [1.0, 1 / math.log2(3), 0.5, 1 / 3]
    )


def test_an_ad_pushes_the_organic_items_below_it_down_by_one():
    # Feed: organic 0, ad, organic 1, organic 2, organic 3.
    ad = Placement(AdBid("a", 0.4, 0.1), position=1, price_cpc=0.3, floor=0.0)
    outcome = feed_outcome(np.array([1.0, 0.0, 1.0, 0.0]), [ad], {"a": 1.0})
    assert outcome.organic_clicks_without_ads == pytest.approx(1.0 + 0.5)
    assert outcome.organic_clicks == pytest.approx(1.0 + 1 / math.log2(5))  # item 2 -> 3
    assert outcome.ad_clicks == pytest.approx(1 / math.log2(3))
    assert outcome.revenue == pytest.approx(0.3 / math.log2(3))
    assert outcome.ads_shown == 1


def test_two_ads_shift_the_items_below_both_by_two():
    labels = np.zeros(10)
    labels[5] = 1.0  # final feed: o0 o1 AD o2 o3 o4 AD o5 ...: o5 sits at 7
    ads = [
        Placement(AdBid("a", 1.0, 0.1), 2, 0.5, 0.0),
        Placement(AdBid("b", 1.0, 0.1), 6, 0.2, 0.0),
    ]
    outcome = feed_outcome(labels, ads, {"a": 0.0, "b": 1.0})
    assert outcome.organic_clicks == pytest.approx(1 / math.log2(9))
    assert outcome.organic_clicks_without_ads == pytest.approx(1 / math.log2(7))
    assert outcome.ad_clicks == pytest.approx(1 / math.log2(8))
    assert outcome.revenue == pytest.approx(0.2 / math.log2(8))


def test_highest_bid_pays_the_next_bid_and_the_last_pays_nothing():
    bids = [AdBid("low", 0.2, 0.9), AdBid("top", 0.9, 0.01), AdBid("mid", 0.5, 0.1)]
    placed = highest_bid_placements(bids, n_organic=10, slots=3, positions=(2, 6, 10))
    assert [(p.bid.campaign_id, p.position, p.price_cpc) for p in placed] == [
        ("top", 2, 0.5),
        ("mid", 6, 0.2),
        ("low", 10, 0.0),
    ]
    # Position 6 would need a 6th organic item (6 - 1 ad above): only 3 here.
    assert len(highest_bid_placements(bids, n_organic=3, slots=3, positions=(2, 6, 10))) == 1


def test_random_pays_its_own_bid_once_per_campaign():
    bids = [AdBid(f"c{i}", 0.1 * (i + 1), 0.05) for i in range(5)]
    placed = random_placements(bids, 10, 3, (2, 6, 10), np.random.default_rng(0))
    assert len({p.bid.campaign_id for p in placed}) == 3
    assert all(p.price_cpc == pytest.approx(p.bid.bid_cpc) for p in placed)


def test_creatives_are_a_seeded_share_of_the_ids_with_positive_bids():
    ids = [f"N{i}" for i in range(200)]
    first = choose_creatives(ids, 0.15, seed=0, bid_median=0.5, bid_sigma=0.5)
    assert len(first) == 30
    assert first == choose_creatives(reversed(ids), 0.15, 0, 0.5, 0.5)  # order-free
    assert first != choose_creatives(ids, 0.15, 1, 0.5, 0.5)
    assert len({c.campaign_id for c in first.values()}) == 30
    assert all(c.bid_cpc > 0 for c in first.values())


# --- the job on a real slice --------------------------------------------------------------------
@pytest.fixture(scope="module")
def mind_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """HELD impressions the ranker never trained on (histories cut to HISTORY items, to keep
    the embedding short) and SEEN training impressions, which must not be counted."""
    source = data_path("mind_small_dev_impressions")
    training = read_metadata(Settings().ranking.model_dir)["training"]
    split = {
        i.impression_id: split_of(
            i.impression_id, training["seed"], training["val_fraction"], training["test_fraction"]
        )
        for i in read_impressions(source)
    }
    held, seen = [], []
    for line in (source / "impressions.jsonl").read_text().splitlines():
        record = json.loads(line)
        part = split[str(record["impression_id"])]
        if part != "train" and len(held) < HELD:
            record["history"] = record["history"][-HISTORY:]
            held.append(json.dumps(record))
        elif part == "train" and len(seen) < SEEN:
            seen.append(line)
    data = tmp_path_factory.mktemp("mind") / "slice"
    data.mkdir()
    (data / "impressions.jsonl").write_text("\n".join(held + seen) + "\n")
    shutil.copy(source / "news.tsv", data / "news.tsv")
    return data, len(held)


@pytest.fixture(scope="module")
def report(mind_slice, embedder, tmp_path_factory) -> tuple[dict, Path]:
    data, _ = mind_slice
    out = tmp_path_factory.mktemp("ads")
    config = EvalAdsConfig(
        data=data,
        model=Settings().ranking.model_dir,
        json_out=out / "report.json",
        cache_dir=out / "var" / "cache",  # the CLI test below reads the same cache
        save_head=out / "ad-head",
        bootstrap=200,
        progress=False,
    )
    return main(config, embedder), out


def test_report_has_every_policy_load_and_head(report, mind_slice):
    result, out = report
    assert json.loads((out / "report.json").read_text()) == result
    assert (out / "report.png").stat().st_size > 1000
    assert result["n_unseen_impressions"] == mind_slice[1]  # the training ones are left out
    assert set(result["policies"]) == set(POLICIES)
    for loads in result["policies"].values():
        assert set(loads) == {"1", "2", "3"}
        for m in loads.values():
            assert {"revenue_per_1000_feeds", "ad_ctr", "organic_loss", "ads_per_feed"} <= set(m)
    assert set(result["calibration"]) == set(HEAD_KINDS)
    assert result["chosen_head"] in HEAD_KINDS
    assert len(result["ecpm_floor_curve"]) == 3 * len(EvalAdsConfig.exchange_rates)
    table = format_table(result)
    assert "| ecpm_floor | 2 |" in table and "(chosen)" in table


def test_calibration_is_finite_and_the_chosen_head_has_the_lowest_log_loss(report):
    result, _ = report
    calibrations = result["calibration"]
    for c in calibrations.values():
        assert all(math.isfinite(c[key]) for key in ("log_loss", "ece", "auc", "mean_pctr"))
        assert 0.0 <= c["ece"] <= 1.0 and c["n"] > 0
    best = min(c["log_loss"] for c in calibrations.values())
    assert calibrations[result["chosen_head"]]["log_loss"] == best


def test_the_quality_floor_never_costs_organic_clicks(report):
    policies = report[0]["policies"]
    for n, ecpm in policies["ecpm"].items():
        assert ecpm["revenue_per_1000_feeds"] >= 0
        assert policies["ecpm_floor"][n]["organic_loss"] <= ecpm["organic_loss"] + 1e-12
        assert policies["ecpm_floor"][n]["ads_per_feed"] <= ecpm["ads_per_feed"]


def test_exchange_rate_zero_is_the_plain_ecpm_auction(report):
    result, _ = report
    for point in result["ecpm_floor_curve"]:
        if point["exchange_rate"] == 0:
            metrics = {k: v for k, v in point.items() if k not in ("ad_load", "exchange_rate")}
            assert metrics == result["policies"]["ecpm"][str(point["ad_load"])]


def test_the_saved_head_loads_and_scores(report):
    result, out = report
    head = AdHead.load(out / "ad-head")
    assert head.kind == result["chosen_head"]
    assert head.metadata["calibration_ad_test"] == result["calibration"][head.kind]
    scores = CreativeScores(np.array([-3.0, 0.0], np.float32), np.ones((2, 32), np.float32))
    p = head.probability(scores)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))


def test_cli_saves_the_head_where_the_service_loads_it(report, mind_slice):
    _, out = report
    head_dir = out / "cli-head"
    result = CliRunner().invoke(
        app,
        ["eval-ads", "--data", str(mind_slice[0]), "--json", str(out / "cli.json"), "--save-head"],
        env={"NEWSROOM_DATA_DIR": str(out / "var"), "NEWSROOM_ADS__HEAD_DIR": str(head_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "| ecpm |" in result.output
    assert AdHead.load(head_dir).kind == json.loads((out / "cli.json").read_text())["chosen_head"]
