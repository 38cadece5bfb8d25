"""Faults the sandbox injects on purpose: the control API's and the command line's format."""

from __future__ import annotations

import random
import re
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


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern)
