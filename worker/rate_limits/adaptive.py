"""ADAPTIVE_RATE: additive increase, multiplicative decrease of a channel's rate, shared by
every pod in Redis (`effective.lua` computes it, `throttled.lua` cuts it on a 429).

A 429 halves the rate the channel was sending at (or, without a limit, what the API accepted
over the last second), and sets a cap just below that rate. The rate climbs back by 5 % of the
limit (or of the cap) a second up to the cap; the cap creeps up by 0.2 % of itself a second,
so a channel probes above the rate that was refused only slowly: about one 429 a minute once
learnt, instead of one per sawtooth. Nothing ever goes above a configured limit.
"""

from __future__ import annotations

#: The rate is multiplied by this on a 429.
DECREASE = 0.5
#: It climbs by this share of the reference (the limit, or the learnt cap) a second.
INCREASE_PER_S = 0.05
#: The cap right after a 429: this share of the rate that was refused.
CAP_MARGIN = 0.9
#: The cap grows by this share of itself a second without a 429.
CREEP_PER_S = 0.002
#: 429s within this long of a cut are one event: one cut. Requests reserved at the old rate
#: before it still go, after the pause its 429 set (whole seconds of Retry-After), one per
#: bulk process (6 s of them for 3 pods at 1000-SMS batches and 1000/s); at 1 s each of
#: their 429s cut again, and one probe took the rate from 1000/s to 55/s (bench/rate_limits).
HOLD_MS = 10_000
#: A channel's learnt state is forgotten this long after its last 429.
FORGET_MS = 3_600_000
#: No cut goes below this many units a second.
FLOOR = 1.0
