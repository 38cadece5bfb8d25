"""Read jobs from JSON Lines: one message object or `{"jobId": ..., "message": ...}` a line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tasks.contract import ContractContext, FieldError
from tasks.jobs import InvalidJobError, Job, parse_job


@dataclass(frozen=True)
class JobLine:
    number: int
    job: Job | None
    errors: list[FieldError] = field(default_factory=list)

    def describe_errors(self) -> Iterator[str]:
        for error in self.errors:
            yield f"line {self.number}: {error}"


def read_job_lines(
    lines: Iterable[str], context: ContractContext | None = None
) -> Iterator[JobLine]:
    """Blank lines are skipped; every other line yields a job or its errors."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            reason = f"not valid JSON: {error.msg} (column {error.colno})"
            yield JobLine(number, None, [FieldError("", reason)])
            continue
        try:
            yield JobLine(number, parse_job(data, context))
        except InvalidJobError as invalid:
            yield JobLine(number, None, invalid.errors)
