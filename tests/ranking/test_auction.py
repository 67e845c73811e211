"""The auction on hand-computed cases: eCPM order, GSP prices, reserve, quality floor, slots."""

from __future__ import annotations

import pytest

from ranking.auction import AdBid, AuctionConfig, run_auction

# value = bid x pCTR: a 0.10, b 0.08, c 0.06
A = AdBid("a", bid_cpc=2.0, pctr=0.05)
B = AdBid("b", bid_cpc=1.0, pctr=0.08)
C = AdBid("c", bid_cpc=3.0, pctr=0.02)
ORGANIC = [0.3, 0.2, 0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01, 0.01]


def test_one_slot_goes_to_the_highest_expected_value_at_the_second_price():
    (won,) = run_auction([C, B, A], ORGANIC, 1, AuctionConfig(positions=(2,)))
    assert won.bid.campaign_id == "a"  # not the highest bid (c): the highest bid x pCTR
    assert won.position == 2
    assert won.price_cpc == pytest.approx(0.08 / 0.05)  # b's value over a's pCTR: 1.60 <= 2.00
    assert won.ecpm == pytest.approx(100.0)


def test_every_slot_pays_the_next_value_and_the_last_the_reserve():
    config = AuctionConfig(positions=(2, 6, 10), reserve_ecpm=10.0)  # 0.01 per impression
    placed = run_auction([A, B, C], ORGANIC, 3, config)
    assert [p.bid.campaign_id for p in placed] == ["a", "b", "c"]
    assert [p.position for p in placed] == [2, 6, 10]
    prices = [p.price_cpc for p in placed]
    assert prices == pytest.approx([0.08 / 0.05, 0.06 / 0.08, 0.01 / 0.02])
    assert all(p.price_cpc <= p.bid.bid_cpc for p in placed)


def test_reserve_keeps_cheap_ads_out():
    config = AuctionConfig(positions=(2, 6), reserve_ecpm=70.0)  # 0.07 per impression
    placed = run_auction([A, B, C], ORGANIC, 2, config)
    assert [p.bid.campaign_id for p in placed] == ["a", "b"]
    assert placed[1].price_cpc == pytest.approx(0.07 / 0.08)  # the reserve, not c's 0.06


def test_quality_floor_keeps_an_ad_from_displacing_a_better_organic_item():
    # One organic click is worth 0.5: at position 2 the ad would push down an item worth
    # 0.5 x 0.1 = 0.05 (more than the ad's 0.04); at position 6, one worth 0.5 x 0.02.
    config = AuctionConfig(positions=(2, 6), exchange_rate=0.5)
    weak = AdBid("weak", bid_cpc=1.0, pctr=0.04)  # value 0.04
    placed = run_auction([weak], ORGANIC, 2, config)
    assert [(p.bid.campaign_id, p.position) for p in placed] == [("weak", 6)]
    (won,) = placed
    # Organic index at position 6 with no ad above it: 6 -> p 0.02, floor 0.01.
    assert won.floor == pytest.approx(0.01)
    assert won.price_cpc == pytest.approx(0.01 / 0.04)


def test_no_ad_beats_a_high_exchange_rate_and_no_ad_ends_a_feed():
    assert run_auction([A, B, C], ORGANIC, 3, AuctionConfig(exchange_rate=100.0)) == []
    # Two organic items: position 2 has none at or below it.
    assert run_auction([A], ORGANIC[:2], 1, AuctionConfig(positions=(2,))) == []


def test_a_lone_bidder_pays_the_reserve_and_never_more_than_its_bid():
    config = AuctionConfig(positions=(1,), reserve_ecpm=5.0)
    (won,) = run_auction([A], ORGANIC, 1, config)
    assert won.price_cpc == pytest.approx(0.005 / 0.05)
    assert run_auction([AdBid("x", 0.1, 0.01)], ORGANIC, 1, config) == []  # worth 1.0 eCPM


def test_positions_must_leave_the_top_free():
    with pytest.raises(ValueError, match="never 0"):
        AuctionConfig(positions=(0, 3))
    with pytest.raises(ValueError):
        AuctionConfig(positions=(5, 3))
