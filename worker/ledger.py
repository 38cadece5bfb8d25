"""The idempotency ledger: a jobId is sent by one batch at a time and finishes once.

Per jobId, `{prefix}:ledger:{jobId}` holds `inflight:{batch}` while a batch sends it, then
its final state: `accepted:{messageUuid}`, `rejected` or `failed`. A final jobId is never
claimed again; `replay` clears a `failed` one so it can be sent again. A claim whose batch's
lease lapsed (see worker/ownership.py) is taken over.

Finishing is one Lua script (`lua/finish.lua`): each outcome is published with its ledger
state, and each entry is acknowledged only when its job is final in that same step. So an
entry is never acknowledged on an assumption, and a claim Redis lost (a restart that cut the
tail of its AOF) still ends in an outcome instead of a silent acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from config import get_settings
from tasks.channels import CHANNELS, MESSAGE_ENDPOINT
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from tasks.tracking.store import key_names, with_status_model
from worker.ownership import LeaseTimes, script, source, waiting_holder

Claim = Literal["claimed", "busy", "done"]
_CLAIMS: dict[str, Claim] = {"claimed": "claimed", "busy": "busy", "done": "done"}


@dataclass(slots=True)  # not frozen: a thousand a batch, and frozen __init__ is slow
class Finished:
    """One entry to finish: its job's outcome, or (state "") only an acknowledgement."""

    entry_id: str
    job_id: str
    state: str = ""  # accepted:{uuid} | rejected | failed | expired | returned | "" (acknowledge)
    outcome_json: str | bytes = ""
    dead_job_json: str | bytes = ""


@dataclass(frozen=True)
class FinishReport:
    published: int  # outcomes this batch published
    already: int  # outcomes not published: the job was final already (another batch)
    taken: int  # outcomes not published: another live batch holds the job
    acknowledged: int  # entries acknowledged and deleted
    unparked: int = 0  # callbacks that came before their message's outcome, applied now
    unparked_finals: tuple[str, ...] = ()  # the final statuses those callbacks brought


class Ledger:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        ttl_s: int,
        leases: LeaseTimes,
        first_lookup_ms: int | None = None,
    ) -> None:
        """`first_lookup_ms`: when an accepted message's status is first looked up;
        STATUS_POLL_AFTER_S when not given."""
        self._keys = keys
        self._ttl_s = ttl_s
        self._leases = leases
        if first_lookup_ms is None:
            first_lookup_ms = int(get_settings().status_poll_after_s * 1000)
        self._first_lookup_ms = first_lookup_ms
        self._names = key_names(keys)
        self._claim = script(client, "claim")
        # Finishing maps accepted messages to their jobs and applies callbacks parked under
        # them: it applies events as the receiver does, by the same rules.
        self._finish = client.register_script(with_status_model(source("finish")))
        self._release = script(client, "release")

    def claim(self, batch: str, job_ids: Sequence[str]) -> list[Claim]:
        if not job_ids:
            return []
        reply: Any = self._claim(
            args=[self._keys.ledger(""), self._keys.lease(""), batch, self._ttl_s, *job_ids]
        )
        return [_as_claim(r) for r in reply]

    def finish(self, channel: str, batch: str, rows: Sequence[Finished]) -> FinishReport:
        """Publish, acknowledge, and end the batch; entries it leaves pending (returned
        unsent, or busy in another batch) wait a lease under a holder of their own."""
        table: list[str | bytes] = []
        for f in rows:
            table += (f.entry_id, f.job_id, f.state, f.outcome_json, f.dead_job_json)
        reply: Any = self._finish(
            keys=[
                self._keys.jobs(channel),
                self._keys.lease(batch),
                self._keys.results,
                self._keys.dead,
            ],
            args=[
                CONSUMER_GROUP,
                batch,
                self._keys.ledger(""),
                self._keys.lease(""),
                self._ttl_s,
                self._leases.of(channel),
                waiting_holder(batch),
                self._names,
                channel if CHANNELS[channel].endpoint == MESSAGE_ENDPOINT else "",
                self._first_lookup_ms,
                *table,
            ],
        )
        published, already, taken, acknowledged, unparked, finals = reply
        return FinishReport(
            int(published),
            int(already),
            int(taken),
            int(acknowledged),
            int(unparked),
            tuple(as_text(f) for f in finals),
        )

    def release(self, batch: str, job_ids: Sequence[str]) -> None:
        """Give back the claims of a batch that could not finish, and end its lease."""
        self._release(
            keys=[self._keys.lease(batch)],
            args=[self._keys.ledger(""), batch, *job_ids],
        )


def _as_claim(reply: bytes | str) -> Claim:
    text = reply.decode() if isinstance(reply, bytes) else reply
    if text not in _CLAIMS:
        raise ValueError(f"unexpected claim reply {text!r}")
    return _CLAIMS[text]
