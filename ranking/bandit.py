"""Thompson sampling over Bernoulli arms (headline variants, each shown and clicked or not).

Each arm's click rate has a Beta(prior_alpha + clicks, prior_beta + impressions - clicks)
posterior. To choose, draw one rate per arm from its posterior and show the arm with the highest
draw: an arm is shown as often as it is probably the best, so traffic moves to the winner while
the evidence accumulates, and a weak arm stops costing clicks early (`evaluation.loop_sim`
measures the regret against uniform A/B allocation). The flat Beta(1, 1) prior is the default
because a new headline has no history; a newsroom with a known base CTR can pass a prior worth a
few dozen impressions centred on it instead.

The module-level `choose` and `p_best` use the flat prior; `ThompsonSampler` holds another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ThompsonSampler:
    prior_alpha: float = 1.0  # pseudo-clicks
    prior_beta: float = 1.0  # pseudo-impressions without a click

    def __post_init__(self) -> None:
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError(
                f"Beta prior parameters must be > 0, got ({self.prior_alpha}, {self.prior_beta})"
            )

    def posterior(
        self, impressions: Sequence[int] | np.ndarray, clicks: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior parameters (alpha, beta), each shaped like the counts (..., K)."""
        shown, clicked = _counts(impressions, clicks)
        return self.prior_alpha + clicked, self.prior_beta + shown - clicked

    def choose(
        self,
        impressions: Sequence[int],
        clicks: Sequence[int],
        rng: np.random.Generator,
    ) -> int:
        """The arm to show next: the arm with the highest draw from its posterior."""
        alpha, beta = self.posterior(impressions, clicks)
        return int(np.argmax(rng.beta(alpha, beta)))

    def choose_batch(
        self, impressions: np.ndarray, clicks: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One choice per row of (R, K) counts: R independent bandits stepped at once. (R,)"""
        alpha, beta = self.posterior(impressions, clicks)
        if alpha.ndim != 2:
            raise ValueError(f"choose_batch takes (R, K) counts, got shape {alpha.shape}")
        return np.argmax(rng.beta(alpha, beta), axis=-1)

    def p_best(
        self,
        impressions: Sequence[int],
        clicks: Sequence[int],
        rng: np.random.Generator,
        draws: int = 4000,
    ) -> list[float]:
        """Monte Carlo probability that each arm has the highest click rate; sums to 1."""
        return self.p_best_batch(
            np.asarray(impressions)[None], np.asarray(clicks)[None], rng, draws
        )[0].tolist()

    def p_best_batch(
        self,
        impressions: np.ndarray,
        clicks: np.ndarray,
        rng: np.random.Generator,
        draws: int = 4000,
    ) -> np.ndarray:
        """`p_best` for each row of (R, K) counts. (R, K)"""
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        alpha, beta = self.posterior(impressions, clicks)
        if alpha.ndim != 2:
            raise ValueError(f"p_best_batch takes (R, K) counts, got shape {alpha.shape}")
        rows, arms = alpha.shape
        samples = rng.beta(alpha[:, None, :], beta[:, None, :], size=(rows, draws, arms))
        best = np.argmax(samples, axis=-1)  # (R, draws)
        return (best[..., None] == np.arange(arms)).mean(axis=1)  # (R, K)


def _counts(
    impressions: Sequence[int] | np.ndarray, clicks: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    shown = np.asarray(impressions, dtype=np.float64)
    clicked = np.asarray(clicks, dtype=np.float64)
    if shown.shape != clicked.shape or shown.ndim == 0 or shown.shape[-1] == 0:
        raise ValueError(
            "impressions and clicks need one count per arm and at least one arm, got shapes "
            f"{shown.shape} and {clicked.shape}"
        )
    if np.any(clicked < 0) or np.any(clicked > shown):
        raise ValueError("counts must satisfy 0 <= clicks <= impressions for every arm")
    return shown, clicked


_FLAT = ThompsonSampler()


def choose(impressions: Sequence[int], clicks: Sequence[int], rng: np.random.Generator) -> int:
    """Thompson sampling's next arm under the flat Beta(1, 1) prior."""
    return _FLAT.choose(impressions, clicks, rng)


def p_best(
    impressions: Sequence[int],
    clicks: Sequence[int],
    rng: np.random.Generator,
    draws: int = 4000,
) -> list[float]:
    """Probability each arm is the best under the flat Beta(1, 1) prior (Monte Carlo)."""
    return _FLAT.p_best(impressions, clicks, rng, draws)
