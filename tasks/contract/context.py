"""What validation depends on besides the message: the clock and account options.

Passed as pydantic's validation context so tests (and the docs' examples, dated 2020 and
2022) can validate against a chosen `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationInfo

from config import get_settings


def utc_now() -> datetime:
    """Naive UTC: the API compares its `YYYY-MM-DD hh:mm:ss` strings against UTC time."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ContractContext:
    now: datetime = field(default_factory=utc_now)
    flashcall_code_max_digits: int = field(
        default_factory=lambda: get_settings().flashcall_code_max_digits
    )


def context_of(info: ValidationInfo) -> ContractContext:
    ctx = info.context
    if isinstance(ctx, ContractContext):
        return ctx
    return ContractContext()
