"""Reading outcomes back: the Python side of `revicom-dispatch results` (see stream_reader)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import redis

from tasks.jobs import Outcome
from tasks.keys import OUTCOME_FIELD, Keys
from tasks.stream_reader import iter_stream


def iter_outcomes(
    client: redis.Redis, keys: Keys, **options: Any
) -> Generator[tuple[str, Outcome], None, None]:
    """(entry id, outcome) in stream order; `options` as `iter_stream`'s (follow, group...)."""
    return iter_stream(client, keys.results, OUTCOME_FIELD, Outcome.model_validate_json, **options)
