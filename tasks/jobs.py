"""A job (what upstream apps enqueue) and its outcome (what they read back)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from tasks.contract import ContractContext, FieldError, Message, field_errors
from tasks.contract.base import NOT_UTF8, first_unencodable
from tasks.contract.fields import documented, rule_error

_JOB_ID = re.compile(r"[\x21-\x7e]{1,128}")


def _check_job_id(value: str) -> str:
    # Visible ASCII only, so a jobId reads the same in logs, Redis keys and every language.
    if not _JOB_ID.fullmatch(value):
        raise rule_error("job_id", "must be 1 to 128 visible ASCII characters (no spaces)")
    return value


def is_job_id(value: object) -> bool:
    """Whether a value read from outside can serve as a jobId (and a ledger key)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


JobId = Annotated[str, AfterValidator(_check_job_id), documented(pattern=f"^{_JOB_ID.pattern}$")]


def new_job_id() -> str:
    return str(uuid.uuid4())


class Job(BaseModel):
    """One message to send. `jobId` is the idempotency key: a jobId is sent at most once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobId: JobId = Field(
        default_factory=new_job_id,
        description="Caller-chosen idempotency key (1-128 visible ASCII characters); a UUID is "
        "generated when absent.",
    )
    message: Message

    @model_validator(mode="before")
    @classmethod
    def _only_utf8_text(cls, data: Any) -> Any:
        """A jobId or key UTF-8 cannot carry is named like any other field's (the message
        checks its own)."""
        where = first_unencodable(data) if isinstance(data, dict) else None
        if where is not None:
            raise PydanticCustomError("utf8", NOT_UTF8, {"field": where})
        return data

    @property
    def channel(self) -> str:
        return self.message.channel

    def to_wire(self) -> str:
        """The stream entry's `job` field."""
        return self.model_dump_json(exclude_none=True)


class InvalidJobError(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def parse_job(data: Any, context: ContractContext | None = None) -> Job:
    """Either `{"jobId": ..., "message": {...}}` or a bare message object."""
    if not isinstance(data, dict):
        raise InvalidJobError([FieldError("", "must be a JSON object")])
    payload = data if "message" in data else {"message": data}
    try:
        return Job.model_validate(payload, context=context)
    except ValidationError as error:
        errors = field_errors(error)
        if payload is not data:  # a bare message: paths are relative to it
            errors = [FieldError(_relative(e.path), e.rule) for e in errors]
        raise InvalidJobError(errors) from None


def _relative(path: str) -> str:
    return path.removeprefix("message").lstrip(".")


class ApiError(BaseModel):
    """The API's `error` object; `code` is null for errors of ours (invalid job, network)."""

    code: int | None
    msg: str


OutcomeStatus = Literal["accepted", "rejected", "failed", "expired", "cancelled"]


class Outcome(BaseModel):
    """Exactly one per job, published to `{prefix}:results`.

    accepted: the API created the message (`messageUuid`). rejected: it never will be sent as
    it is (invalid job, 422, per-item refusal). failed: retries ran out, or the API gave an
    answer its docs do not list; the job is in the dead-letter stream for replay. expired: it
    was older than its channel's `{CHANNEL}_MAX_AGE_S` when it could go, so it was not sent.
    cancelled: `revicom-dispatch cancel` took it before any batch sent it; it never will be.
    """

    model_config = ConfigDict(frozen=True)

    jobId: str = Field(
        description="The job's jobId; the stream entry id when the job has none or an "
        "unusable one (then `error` says so)."
    )
    entryId: str | None = Field(None, description="The job's stream entry id.")
    status: OutcomeStatus
    channelType: str | None = Field(description="The job's channel; null if unreadable.")
    destination: str | None = None
    messageUuid: str | None = Field(None, description="Set when accepted.")
    code: int | None = Field(None, description="The API's per-item or error code.")
    error: ApiError | None = None
    httpStatus: int | None = Field(None, description="Of the last API response; null if none.")
    attempts: int = Field(0, ge=0, description="HTTP requests that carried this job.")
    externalMessageId: str | None = None
    segments: int | None = Field(
        None,
        ge=1,
        description="SMS only: the parts its text is sent and billed as (GSM-7: 160 septets "
        "alone, 153 each concatenated; UCS-2: 70 or 67 UTF-16 units), whatever unit the rate "
        "limits count in; null for other channels and when the batch had no valid message "
        "(invalid, expired, given up). A cancelled job's text is counted as it was queued.",
    )
    finishedAt: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_wire(self) -> str:
        """The results entry's `outcome` field."""
        return self.model_dump_json()


def outcome_json(
    job_id: str,
    entry_id: str | None,
    status: OutcomeStatus,
    channel: str | None,
    *,
    destination: str | None = None,
    message_uuid: str | None = None,
    code: int | None = None,
    error: tuple[int | None, str] | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    external_id: str | None = None,
    segments: int | None = None,
) -> str:
    """`Outcome(...).to_wire()` without the model: a batch writes a thousand of them, and the
    model's construction and dump cost more than the rest of an outcome's way. The model
    stays the schema; tests hold the two to the same bytes."""
    return orjson.dumps(
        {
            "jobId": job_id,
            "entryId": entry_id,
            "status": status,
            "channelType": channel,
            "destination": destination,
            "messageUuid": message_uuid,
            "code": code,
            "error": None if error is None else {"code": error[0], "msg": error[1]},
            "httpStatus": http_status,
            "attempts": attempts,
            "externalMessageId": external_id,
            "segments": segments,
            "finishedAt": datetime.now(UTC),
        },
        option=orjson.OPT_UTC_Z,
    ).decode()


__all__ = [
    "ApiError",
    "InvalidJobError",
    "Job",
    "Outcome",
    "OutcomeStatus",
    "is_job_id",
    "new_job_id",
    "outcome_json",
    "parse_job",
]
