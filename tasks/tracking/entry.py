"""The statuses stream's entry format (`schemas/status.schema.json`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """As the API reports it (notes.md: "Getting messages")."""

    totalPrice: float | None = None
    currency: str | None = None
    invoicedParts: int | None = None
    final: bool | None = None


class StatusEntry(BaseModel):
    """One change of a job's delivery status, published to `{prefix}:statuses`."""

    model_config = ConfigDict(frozen=True)

    jobId: str
    messageUuid: str
    channelType: str
    event: str = Field(
        description="The callback event that brought it (`sent`, `delivered`, `read`, "
        "`price`, `click`), `poll` for a lookup, `give_up` for the status `unknown`."
    )
    status: str | None = Field(
        description="The job's status after this change: sending, sent, delivered, "
        "undelivered, unsent, read, unread, or unknown (no status before STATUS_GIVE_UP_S)."
    )
    final: bool = Field(
        description="True on the one entry where the job reached its final status; later "
        "entries (read, unread, price) say false."
    )
    statusTime: str | None = Field(description="When the API says the status was reached (UTC).")
    errorCode: int | None = Field(None, description="The API's error code of the message.")
    price: Price | None = None
    source: Literal["callback", "poll"]
    receivedAt: str = Field(description="When we learned it (UTC, ISO 8601).")
