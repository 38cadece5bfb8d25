"""Every Redis key and name the project uses, all under one prefix."""

from __future__ import annotations

from dataclasses import dataclass

CONSUMER_GROUP = "dispatch"
SEND_BATCH = "revicom.send_batch"  # the Celery task's name
JOB_FIELD = "job"
#: Beside `job` when our producer validated it (tasks/stamp.py); foreign producers omit it.
STAMP_FIELD = "stamp"
OUTCOME_FIELD = "outcome"
STATUS_FIELD = "status"


def as_text(value: bytes | str) -> str:
    """Redis replies (ids, names) arrive as bytes; the project handles them as text."""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Keys:
    prefix: str

    def jobs(self, channel: str) -> str:
        """One stream per channel; entries carry the field `job` (a Job as JSON), and `stamp`
        when our producer validated it."""
        return f"{self.prefix}:jobs:{channel}"

    @property
    def results(self) -> str:
        """Outcomes, field `outcome` (an Outcome as JSON)."""
        return f"{self.prefix}:results"

    @property
    def dead(self) -> str:
        """Jobs whose retries ran out, kept for replay."""
        return f"{self.prefix}:dead"

    @property
    def statuses(self) -> str:
        """One entry per change of a job's delivery status, field `status` (tasks/tracking)."""
        return f"{self.prefix}:statuses"

    def message(self, message_uuid: str) -> str:
        """A hash per accepted message: its jobId and channel (written with the `accepted`
        outcome), then its status, final flag, price and the events seen."""
        return f"{self.prefix}:message:{message_uuid}"

    def parked(self, message_uuid: str) -> str:
        """Callbacks that came before their message's jobId was known, waiting for it."""
        return f"{self.prefix}:parked:{message_uuid}"

    @property
    def parked_index(self) -> str:
        """A sorted set: messageUuids with parked callbacks, by when they expire (ms)."""
        return f"{self.prefix}:parked"

    @property
    def tracking(self) -> str:
        """A sorted set: accepted messages without a final status, by their next lookup (ms)."""
        return f"{self.prefix}:tracking"

    def track(self, job_id: str) -> str:
        """A list per jobId: the entry ids of its outcome (`r{id}`) and its status entries
        (`s{id}`), for `revicom-dispatch track`; ids, not copies, so it costs ~100 bytes a job."""
        return f"{self.prefix}:track:{job_id}"

    def ledger(self, job_id: str) -> str:
        """A jobId's state: `inflight:{batch}`, then its final status (see worker/ledger.py)."""
        return f"{self.prefix}:ledger:{job_id}"

    def lease(self, holder: str) -> str:
        """Lives while `holder` (a reader or a batch: a consumer of the group) is alive; its
        value says what it is doing (see worker/ownership.py)."""
        return f"{self.prefix}:lease:{holder}"

    @property
    def circuit(self) -> str:
        """The API circuit breaker all pods share: a hash (see worker/circuit.py)."""
        return f"{self.prefix}:circuit"

    @property
    def circuit_probe(self) -> str:
        """Held by the batcher whose batch tests the API after a cooldown."""
        return f"{self.prefix}:circuit:probe"

    @property
    def balance(self) -> str:
        """The account balance as last refreshed, a hash (see tasks/balance_state.py)."""
        return f"{self.prefix}:balance"

    def rate(self, bucket: str) -> str:
        """A send-rate bucket's theoretical arrival time, ms as text (worker/rate_limits/):
        `channel:{CHANNEL}`, `account` or `bulk`; it expires once the bucket is full again."""
        return f"{self.prefix}:rate:{bucket}"

    def rate_adaptive(self, channel: str) -> str:
        """A channel's rate as learnt from 429s (ADAPTIVE_RATE), a hash: rate, cap, at."""
        return f"{self.prefix}:rate:adaptive:{channel}"

    def rate_accepted(self, channel: str) -> str:
        """Units of a channel the API accepted, a hash: from, first, last, and per second over
        a window (what ADAPTIVE_RATE learns a rate from on a 429 without a limit)."""
        return f"{self.prefix}:rate:accepted:{channel}"

    def pause(self, endpoint: str) -> str:
        """Set by a 429 on `endpoint` (its path) for every pod, a hash: until (ms), strikes."""
        return f"{self.prefix}:pause:{endpoint}"

    @property
    def stamp_key(self) -> str:
        """The MAC key of producers' stamps (tasks/stamp.py): 32 random bytes."""
        return f"{self.prefix}:stamp-key"

    @property
    def celery(self) -> str:
        """Prefix of the Celery broker's own keys, so they share the namespace."""
        return f"{self.prefix}:celery:"
