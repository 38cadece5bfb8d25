"""OTP codes trickled in while a campaign flows: how long a code waits behind a campaign, as
pipeline part 3 and rate_limits part 1 measure it."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, NamedTuple

import redis

from bench.jobs import code_destination, code_job, sms_jobs
from tasks.contract import ContractContext
from tasks.keys import Keys
from tasks.producer import Producer

#: The campaign's jobs are tagged so (`bulk-0`, `bulk-1`, ...).
CAMPAIGN_TAG = "bulk"
#: A code enqueued this long ago has its outcome (the codes' p99 is a fraction of it): the
#: trickle counts it as done when it waits for the campaign's last outcomes.
CODE_DONE_S = 1.0


def enqueue_campaign(url: str, prefix: str, n: int) -> None:
    """Run in its own process, so the codes' producer never waits for its GIL."""
    client = redis.Redis.from_url(url)
    Producer(client, Keys(prefix), context=ContractContext()).enqueue_many(
        sms_jobs(n, CAMPAIGN_TAG)
    )


class Trickle(NamedTuple):
    """The codes a trickle enqueued: destination → when (unix time), in enqueue order."""

    enqueued_at: dict[str, float]

    @property
    def codes(self) -> int:
        return len(self.enqueued_at)

    def jobs(self) -> dict[str, str]:
        """jobId → destination of every code."""
        return {code_job(i)["jobId"]: code_destination(i) for i in range(self.codes)}

    def latencies_ms(self, arrivals: list[dict[str, Any]]) -> list[float]:
        """From enqueue to the sandbox's `receivedAt`, per code arrived (its /_sandbox/received
        records), sorted."""
        return sorted(
            (r["receivedAt"] - self.enqueued_at[r["message"]["destination"]]) * 1000
            for r in arrivals
        )


def trickle(url: str, keys: Keys, n: int, per_second: float) -> Trickle:
    """Enqueue an n-SMS campaign from a spawned process and a FLASHCALL code every
    1/per_second s meanwhile, until the campaign is enqueued and has its outcomes (the codes
    enqueued over CODE_DONE_S ago counted as done, so the trickle lasts to within a second's
    codes of the campaign's end). The codes' last outcomes may still be on their way."""
    client = redis.Redis.from_url(url)
    producer = Producer(client, keys, context=ContractContext())
    already = client.xlen(keys.results)
    campaign = multiprocessing.get_context("spawn").Process(
        target=enqueue_campaign, args=(url, keys.prefix, n)
    )
    enqueued_at: dict[str, float] = {}
    in_flight = int(per_second * CODE_DONE_S)
    campaign.start()
    started = time.monotonic()
    i = 0
    while campaign.is_alive() or client.xlen(keys.results) < already + n + max(0, i - in_flight):
        if campaign.exitcode:  # its jobs will never all come: fail, not trickle forever
            raise RuntimeError(f"the campaign's producer exited with {campaign.exitcode}")
        enqueued_at[code_destination(i)] = time.time()
        producer.enqueue(code_job(i))
        i += 1
        time.sleep(max(0.0, started + i / per_second - time.monotonic()))
    campaign.join()
    return Trickle(enqueued_at)
