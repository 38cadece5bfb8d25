"""ADAPTIVE_RATE: additive increase, multiplicative decrease of a channel's rate, shared by
every pod in Redis (`effective.lua` computes it, `throttled.lua` cuts it on a 429).

A 429 halves the rate in force (the configured limit, or what earlier 429s left) and sets a
cap just below it. The rate climbs back by 5 % of the limit (or of the cap) a second up to the
cap; the cap creeps up by 0.2 % of itself a second, so a channel probes above the rate that was
refused only slowly: about one 429 a minute once learnt, instead of one per sawtooth. Nothing
ever goes above a configured limit.

Without a limit there is no rate to halve: the shared pause alone holds the channel, and once
the API's acceptances span LEARN_MS, a 429 starts the rate (and its cap) at CAP_MARGIN of what
the API accepted meanwhile. That is the operator's rate, measured over seconds: with requests
of a whole second of it each, the second or two the first 429 used to learn from held 0, 1
or 2 of them, and the channel settled at 51-90 % of the operator's rate.
"""

from __future__ import annotations

#: The rate in force is multiplied by this on a 429.
DECREASE = 0.5
#: It climbs by this share of the reference (the limit, or the learnt cap) a second.
INCREASE_PER_S = 0.05
#: The cap right after a 429: this share of the rate that was refused; a learnt rate (and its
#: cap) is this share of the rate the API accepted.
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
#: Units the API accepted are counted per second over this window (s), what a channel
#: without a limit learns its rate from.
WINDOW_S = 10
#: Without a limit, no rate is learnt before the accepted units span this long (ms): 5 s of
#: 1000-unit requests at 1000/s is 5 of them.
LEARN_MS = 5_000
