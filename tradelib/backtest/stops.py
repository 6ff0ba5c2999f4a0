"""Stop rule for vectorbt: fixed stop-loss until the trade is `activation` in profit, then trail."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def trailing_after_activation_nb(c, stop_loss, activation, distance):  # type: ignore[no-untyped-def]
    """Fixed stop at entry -/+ stop_loss until price moved `activation` in favour, then trail.

    vectorbt tracks the best price since entry when the trailing flag is on (c.curr_price);
    we express the wanted stop level relative to it, so before activation the level stays at
    the fixed stop and afterwards it is the better of the fixed stop and best -/+ distance.
    """
    if c.position_now == 0 or np.isnan(c.curr_stop):
        return c.curr_stop, c.curr_trail
    sl = stop_loss[c.col]
    entry = c.init_price
    best = c.curr_price
    if c.position_now > 0:
        fixed = 1.0 - entry * (1.0 - sl) / best
        if best >= entry * (1.0 + activation[c.col]):
            return min(fixed, distance[c.col]), True
        return fixed, True
    fixed = entry * (1.0 + sl) / best - 1.0
    if best <= entry * (1.0 - activation[c.col]):
        return min(fixed, distance[c.col]), True
    return fixed, True
