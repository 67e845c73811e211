"""Part (a) of the loop simulation on a small slice: real MIND readers against the live
service, a challenger retrained from the exposure log, then an A/B day against the committed
head through a real experiment."""

from __future__ import annotations

from evaluation.loop_retrain import RetrainSimConfig, format_table, run


def test_simulated_days_retrain_a_challenger_and_run_it_in_an_experiment(embedder):
    config = RetrainSimConfig(
        readers=30,
        days=2,
        epochs=2,
        other_articles=200,
        min_feeds=20,
        mix_mind=False,
        progress=False,
    )
    result = run(config, embedder=embedder)
    assert result["readers"] == 30
    assert [d["feeds"] for d in result["days"]] == [30, 30]
    offline = result["offline"]["metrics"]
    assert offline["feeds"] == 12  # the most recent 20% of 60 logged feeds
    assert set(offline) >= {"champion", "challenger", "logged_top_slot_ctr"}
    assert result["offline"]["training"]["logged_feeds"] == 48
    ab = result["ab_day"]
    assert ab["feeds"] == 30 and set(ab["clicks_per_feed"]) == {"committed", "challenger"}
    assert ab["method"] == "sequential"
    assert "| challenger |" in format_table(result)
