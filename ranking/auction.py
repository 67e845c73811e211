"""Sponsored slots in a feed: an expected-value auction with a generalised second price.

Every eligible ad is worth `pCTR x bid_cpc` per impression (eCPM / 1000). Slots are filled top
down at configured feed positions (never the first, spaced apart). A slot goes to the most
valuable remaining ad whose value beats both the reserve and the *quality floor*: the organic
item it pushes down is worth `exchange_rate x p_click(organic)` (money per organic click), and an
ad that is worth less than that does not take the slot, so relevance is never sold cheaply.

The winner pays, per click, what it needed to keep its slot: the highest of the runner-up's
value, the reserve and the floor, divided by its own pCTR; never more than its bid (GSP, as
in Edelman, Ostrovsky & Schwarz 2007, with a reserve and a quality floor as Kevel and Google's
ad auctions apply them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdBid:
    campaign_id: str
    bid_cpc: float  # money per click
    pctr: float  # calibrated click probability for this reader

    @property
    def value(self) -> float:
        """Expected revenue of one impression."""
        return self.bid_cpc * self.pctr


@dataclass(frozen=True, slots=True)
class AuctionConfig:
    positions: tuple[int, ...] = (2, 6, 10)  # 0-based indices in the final feed; 0 never
    reserve_ecpm: float = 0.0  # money per 1,000 impressions an ad must be worth at least
    exchange_rate: float = 0.0  # money one organic click is worth; 0 turns the floor off

    def __post_init__(self) -> None:
        if any(p < 1 for p in self.positions) or list(self.positions) != sorted(
            set(self.positions)
        ):
            raise ValueError("ad positions must be distinct, ascending and never 0 (the top)")
        if self.reserve_ecpm < 0 or self.exchange_rate < 0:
            raise ValueError("reserve_ecpm and exchange_rate must be >= 0")


@dataclass(frozen=True, slots=True)
class Placement:
    bid: AdBid
    position: int  # index in the final feed (organic items shift down by one below it)
    price_cpc: float  # charged per click: GSP price, <= bid_cpc
    floor: float  # value the slot had to beat (reserve or displaced organic value)

    @property
    def ecpm(self) -> float:
        return 1000.0 * self.bid.value


def run_auction(
    bids: Sequence[AdBid],
    organic_click_probabilities: Sequence[float],
    slots: int,
    config: AuctionConfig,
) -> list[Placement]:
    """At most `slots` placements (one per campaign) over a feed whose organic items, in
    order, have these click probabilities. A position needs an organic item at or below it
    (an ad never ends a feed)."""
    reserve = config.reserve_ecpm / 1000.0
    ranked = sorted(
        (b for b in bids if b.pctr > 0 and b.bid_cpc > 0 and b.value >= reserve),
        key=lambda b: (-b.value, -b.bid_cpc, b.campaign_id),
    )
    placements: list[Placement] = []
    taken: set[str] = set()
    for position in config.positions:
        if len(placements) >= slots:
            break
        organic_index = position - len(placements)  # organic items above it: position - ads
        if organic_index >= len(organic_click_probabilities):
            break
        displaced = config.exchange_rate * float(organic_click_probabilities[organic_index])
        floor = max(reserve, displaced)
        remaining = [b for b in ranked if b.campaign_id not in taken]
        # Ranked by value: if the best remaining ad misses the floor, every other one does.
        if not remaining or remaining[0].value < floor:
            continue
        winner = remaining[0]
        runner_up = remaining[1].value if len(remaining) > 1 else 0.0
        price = min(winner.bid_cpc, max(runner_up, floor) / winner.pctr)
        placements.append(Placement(winner, position, round(price, 6), floor))
        taken.add(winner.campaign_id)
    return placements
