"""The privacy budget of server-side differential privacy with fixed clipping (node-level DP).

Flower's :class:`~flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping` clips
every node's update to ``clipping_norm`` and adds Gaussian noise of standard deviation
``noise_multiplier * clipping_norm`` to the sum; it does not report the budget. Here the
budget is accounted with Rényi DP of the Gaussian mechanism (order a: a / (2 sigma^2) per
round, composed over rounds, converted with eps = rdp + log(1/delta) / (a - 1)), without
amplification by sampling: every round is counted as if every node took part, which
over-states epsilon when fewer nodes train (a conservative figure).
"""

from __future__ import annotations

import math

ORDERS = [1.0 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 257)]


def epsilon_spent(noise_multiplier: float, rounds: int, delta: float) -> float:
    """(epsilon, delta)-DP after ``rounds`` Gaussian rounds of the given noise multiplier."""
    if noise_multiplier <= 0:
        return math.inf
    if not 0 < delta < 1:
        raise ValueError("delta must be between 0 and 1")
    per_order = (
        rounds * a / (2 * noise_multiplier**2) + math.log(1 / delta) / (a - 1) for a in ORDERS
    )
    return min(per_order)
