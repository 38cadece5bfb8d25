"""Faults the sandbox injects on purpose: the control API's and the command line's format."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FaultStatus = Literal[429, 500, 502, 503, 504]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a regular expression: {error}") from None
    return value


class StatusFault(BaseModel):
    """Answer `status` to the next `next` requests, then to a `fraction` of the rest."""

    model_config = ConfigDict(extra="forbid")

    status: FaultStatus
    next: int = Field(0, ge=0)
    fraction: float = Field(0.0, ge=0.0, le=1.0)
    retryAfter: int | None = Field(None, ge=0, description="Seconds, sent as Retry-After.")

    @model_validator(mode="after")
    def _applies_somewhere(self) -> Self:
        if self.next == 0 and self.fraction == 0:
            raise ValueError("set next (a count) or fraction (0-1), or the fault never fires")
        return self


class ItemCode(BaseModel):
    """Per-item refusal: matching destinations get `code` (not 201) and `errors: true`."""

    model_config = ConfigDict(extra="forbid")

    destination: str = Field(description="Regular expression, searched in the destination.")
    code: int = Field(ge=100, le=9999)

    @field_validator("destination")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _regex(value)


class RateLimit(BaseModel):
    """An account's send limit, as an operator enforces it: a token bucket of `burst`
    messages refilled at `perSecond`, shared by /message and /flashcall-conversion."""

    model_config = ConfigDict(extra="forbid")

    perSecond: float = Field(gt=0, allow_inf_nan=False, description="Messages refilled a second.")
    burst: int = Field(
        ge=1,
        description="The bucket's size (full when the faults are set). A request of more "
        "objects than this can never pass: it always gets 429 with Retry-After 1.",
    )


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: StatusFault | None = None
    latencyMs: int = Field(0, ge=0, le=600_000, description="Added before every answer.")
    answerDelayMs: int = Field(
        0,
        ge=0,
        le=600_000,
        description="Added after the messages are created, before the 200: their callbacks "
        "can reach the receiver before the sender has the 201s.",
    )
    hangNext: int = Field(0, ge=0, description="Read the body and never answer.")
    dropNext: int = Field(0, ge=0, description="Close the connection without an answer.")
    rejectDestinations: str | None = Field(
        None, description="Regex: a request with a matching destination gets 422 Invalid msisdn."
    )
    rejectSenders: str | None = Field(
        None,
        description="Regex: a matching senderName of SMS or WHATSAPP (the channels with "
        "approved names) gets 422 No active sender name.",
    )
    itemCodes: list[ItemCode] = Field(default_factory=list)
    shortenerDown: bool = Field(
        False, description="Messages with shortUrl: true get 503 5030 Url shortener is unavailable."
    )
    rateLimit: RateLimit | None = Field(
        None,
        description="Each request of a well-formed array of at most 1000 objects takes one "
        "token per object (a 422 too); one that finds too few gets 429 Too Many Requests with "
        "Retry-After (whole seconds until enough are back, at least 1), takes none and "
        "creates nothing.",
    )

    @field_validator("rejectDestinations", "rejectSenders")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else _regex(value)


class FaultPlan:
    """The faults in force, with their countdowns; one per sandbox process."""

    def __init__(self, faults: Faults | None = None, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self.set(faults or Faults())

    def set(self, faults: Faults) -> None:
        self.faults = faults
        self._status_left = faults.status.next if faults.status else 0
        self._hang_left = faults.hangNext
        self._drop_left = faults.dropNext
        self.reject_destination = _compile(faults.rejectDestinations)
        self.reject_sender = _compile(faults.rejectSenders)
        self.item_codes = [(re.compile(i.destination), i.code) for i in faults.itemCodes]
        limit = faults.rateLimit
        self._bucket = None if limit is None else TokenBucket(limit.perSecond, limit.burst)

    def take_tokens(self, count: int) -> int | None:
        """None when the rate limit lets `count` messages through (their tokens are taken);
        else the Retry-After, in seconds, of the 429 they get."""
        if self._bucket is None:
            return None
        wait = self._bucket.take(count)
        if wait is None:
            return None
        return 1 if math.isinf(wait) else max(1, math.ceil(wait))

    def take_drop(self) -> bool:
        if self._drop_left:
            self._drop_left -= 1
            return True
        return False

    def take_hang(self) -> bool:
        if self._hang_left:
            self._hang_left -= 1
            return True
        return False

    def take_status(self) -> StatusFault | None:
        fault = self.faults.status
        if fault is None:
            return None
        if self._status_left:
            self._status_left -= 1
            return fault
        if fault.fraction and self._random.random() < fault.fraction:
            return fault
        return None


class TokenBucket:
    """`size` tokens at most, `rate` more a second; only a whole request's worth is taken."""

    def __init__(self, rate: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.size, self._clock = rate, size, clock
        self._tokens = float(size)
        self._at = clock()

    def take(self, count: int) -> float | None:
        """None when `count` tokens were there (they are taken); else the seconds until they
        will be, infinite when `count` is more than the bucket holds."""
        now = self._clock()
        self._tokens = min(float(self.size), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if count <= self._tokens:
            self._tokens -= count
            return None
        if count > self.size:
            return math.inf
        return (count - self._tokens) / self.rate


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern)
