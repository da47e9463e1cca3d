"""Wald's sequential probability ratio test of a new engine's accuracy against the current one.

Only wafers a reviewer labelled and both engines classified count, and of those only the
*discordant* pairs — one engine right, the other wrong — carry information about which is better
(as in McNemar's test). Let θ be the chance that, in a discordant pair, the new engine is the one
that is right. The test weighs H0: θ = θ0 (the new engine is worse, θ0 < 0.5) against
H1: θ = θ1 (it is at least as good, θ1 ≥ 0.5) one pair at a time, with Wald's bounds
A = ln((1 − β) / α) and B = ln(β / (1 − α)): the log-likelihood ratio reaching A accepts H1
(``"better"``), reaching B accepts H0 (``"worse"``), anything between is ``"undecided"``.
α is the chance of passing a worse engine, β that of failing a good one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from waferscope.protocols.errors import WaferscopeError

Decision = Literal["better", "worse", "undecided"]


class SprtSettingsError(WaferscopeError):
    """SPRT parameters out of range (0 < α, β < 1 and 0 < θ0 < θ1 < 1)."""


@dataclass(frozen=True, slots=True)
class SprtResult:
    decision: Decision
    llr: float  # the log-likelihood ratio when the test stopped (or after every pair)
    pairs: int  # discordant pairs used
    lower: float  # B
    upper: float  # A


def sprt(
    outcomes: Iterable[tuple[bool, bool]],
    *,
    alpha: float = 0.05,
    beta: float = 0.10,
    theta0: float = 0.35,
    theta1: float = 0.5,
) -> SprtResult:
    """Run the test over (current engine right, new engine right) pairs, in their order."""
    if not (0 < alpha < 1 and 0 < beta < 1 and 0 < theta0 < theta1 < 1):
        raise SprtSettingsError(
            f"SPRT needs 0 < alpha, beta < 1 and 0 < theta0 < theta1 < 1; got alpha={alpha}, "
            f"beta={beta}, theta0={theta0}, theta1={theta1}"
        )
    upper = math.log((1 - beta) / alpha)
    lower = math.log(beta / (1 - alpha))
    new_right = math.log(theta1 / theta0)
    old_right = math.log((1 - theta1) / (1 - theta0))
    llr, pairs = 0.0, 0
    for current_ok, new_ok in outcomes:
        if current_ok == new_ok:
            continue  # concordant: no information about which engine is better
        pairs += 1
        llr += new_right if new_ok else old_right
        if llr >= upper:
            return SprtResult("better", llr, pairs, lower, upper)
        if llr <= lower:
            return SprtResult("worse", llr, pairs, lower, upper)
    return SprtResult("undecided", llr, pairs, lower, upper)
