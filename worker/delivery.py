"""Deliver one channel's batch: POST it, split it on 422 until the bad items stand alone,
and say for every item what became of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from worker.api_client import Answer, ApiClient
from worker.circuit import Circuit

#: `returned`: not sent, no outcome: the circuit is open (or the batch's lease is in doubt),
#: so the job waits in its stream.
Status = Literal["accepted", "rejected", "failed", "expired", "returned"]


@dataclass(slots=True)
class ItemResult:
    status: Status
    attempts: int = 0
    http_status: int | None = None
    message_uuid: str | None = None
    code: int | None = None
    error: tuple[int | None, str] | None = None


@dataclass
class DeliveryStats:
    requests: int = 0
    splits: int = 0
    waited_s: float = 0.0  # for rate budget: moves the deadline later, counts no attempt


@dataclass(frozen=True)
class Sending:
    """How one batch sends: where, its deadline (time.monotonic()) shared by all its
    requests, the circuit every answer is told to, and whether it is the circuit's probe."""

    endpoint: str
    label: str  # the channel: names the batch in logs, and whose rate budget it draws on
    deadline: float
    circuit: Circuit | None = None
    probe: bool = False
    #: False once the batch may have lost its entries (its lease not renewed in time).
    still_held: Callable[[], bool] | None = None


def deliver(
    client: ApiClient, how: Sending, objects: list[dict[str, Any]]
) -> tuple[list[ItemResult], DeliveryStats]:
    """One result per object, in order.

    A 422 means nothing of that request was created; for n > 1 objects each half is sent
    again, recursively (within the batch's one deadline), so one bad object in 1,000 costs
    about 2*log2(1000) extra requests and every valid object is still delivered. Each half
    is a request and waits for its own rate budget; time so waited moves the deadline later,
    so a slow budget never fails a job (while it waits the lease is renewed; a lease in doubt
    or an open circuit after the wait returns the items unsent).
    """
    delivery = _Delivery(client, how, objects)
    delivery.send(list(range(len(objects))))
    return delivery.results, delivery.stats


class _Delivery:
    def __init__(self, client: ApiClient, how: Sending, objects: list[dict[str, Any]]) -> None:
        self.client, self.how, self.objects = client, how, objects
        self.results = [ItemResult("failed") for _ in objects]
        self.stats = DeliveryStats()
        self.probing = how.probe

    def send(self, slots: list[int]) -> None:
        how = self.how
        answer = self.client.post(
            how.endpoint,
            [self.objects[i] for i in slots],
            how.label,
            deadline=how.deadline + self.stats.waited_s,
            circuit=how.circuit,
            probe=self.probing,
            still_held=how.still_held,
        )
        self.probing = False  # a probe is one request: the rest follow the circuit
        self.stats.requests += answer.attempts
        self.stats.waited_s += answer.waited_s
        for i in slots:
            self.results[i].attempts += answer.attempts
            if answer.status is not None:  # the last response, not a request never answered
                self.results[i].http_status = answer.status
        if answer.status == 422 and len(slots) > 1:
            self.stats.splits += 1
            half = len(slots) // 2
            self.send(slots[:half])
            self.send(slots[half:])
            return
        for i, item in zip(slots, _classify(answer, len(slots)), strict=True):
            result = self.results[i]
            result.status, result.message_uuid = item.status, item.message_uuid
            result.code, result.error = item.code, item.error


def _classify(answer: Answer, size: int) -> list[ItemResult]:
    """What one answer means for each of the `size` items it carried."""
    if answer.paused:
        return [ItemResult("returned") for _ in range(size)]
    if answer.status == 200:
        items = answer.body.get("items") if isinstance(answer.body, dict) else None
        if isinstance(items, list) and len(items) == size:
            return [_item(item) for item in items]
        failure = (None, f"a 200 answer without one item per message: {str(answer.body)[:200]}")
        return [ItemResult("failed", error=failure) for _ in range(size)]
    code, _ = answer.error
    # 422 for one item: the item is wrong. (401/403 refuse the key, not the items: the answer
    # is `paused`.) Retries ran out while the circuit stayed closed, or an answer the docs do
    # not list: failed, so the job is dead-lettered and can be replayed.
    status: Status = "rejected" if answer.status == 422 else "failed"
    return [ItemResult(status, code=code, error=answer.error) for _ in range(size)]


def _item(item: Any) -> ItemResult:
    """One item of a 200: accepted (201 with its messageUuid) or refused with its own code;
    anything else is an answer the docs do not list, so `failed` (dead-lettered, replayable)."""
    code = item.get("code") if isinstance(item, dict) else None
    if type(code) is not int:  # not an object, no code, or a code that is no integer
        return ItemResult("failed", error=(None, f"unreadable item {repr(item)[:200]}"))
    if code != 201:
        return ItemResult("rejected", code=code, error=(code, f"item refused with code {code}"))
    if not isinstance(item.get("messageUuid"), str):
        return ItemResult(
            "failed", error=(None, f"a 201 item without messageUuid: {repr(item)[:200]}")
        )
    return ItemResult("accepted", message_uuid=item["messageUuid"], code=201)
