"""The GCRA buckets one request draws on: its channel's, the account's and, for a bulk
channel, the bulk lane's share of the account."""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from tasks.channels import CHANNELS
from tasks.keys import Keys


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: float  # units a second; 0: no limit
    charged: bool = True  # False: only read, for another bucket's `hides`
    hides: int = 0  # 1-based index of the bucket whose reservations for later are not seen
    share: float = 0.0  # how much of that bucket's reserved time counts here


def bucket_names(channel: str) -> list[str]:
    """The buckets `channel` is limited by, as `status` names them."""
    return [f"channel:{channel}", "account", *([] if CHANNELS[channel].otp else ["bulk"])]


def buckets(settings: Settings, keys: Keys, channel: str) -> list[Bucket]:
    """The channel's bucket always comes first (ADAPTIVE_RATE may give it a rate); with
    ACCOUNT_RATE_LIMIT the account's, at that rate, and the bulk lane's, at (1 - OTP_RATE_SHARE)
    of it. A code sees the account bucket without the bulk lane's reservations for later: the
    bulk bucket holds the campaign to its share, so a code never waits behind a campaign's
    queued batches; the codes' own sends still charge the account, so codes beyond their
    share push the campaign's next reservations back (codes first)."""
    mine = Bucket(keys.rate(f"channel:{channel}"), settings.tuning(channel).rate_limit)
    account = settings.account_rate_limit
    if not account:
        return [mine]
    bulk_rate = account * (1 - settings.otp_rate_share)
    if CHANNELS[channel].otp:
        return [
            mine,
            Bucket(keys.rate("account"), account, hides=3, share=1.0),
            Bucket(keys.rate("bulk"), bulk_rate, charged=False),
        ]
    return [mine, Bucket(keys.rate("account"), account), Bucket(keys.rate("bulk"), bulk_rate)]
