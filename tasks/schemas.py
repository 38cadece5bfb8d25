"""The job, outcome and status formats as JSON Schema files, for programs in any language.

`python -m tasks.schemas DIR` (`make schemas`) rewrites them; a test fails when the committed
files drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.jobs import Job, Outcome
from tasks.tracking.entry import StatusEntry

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "job.schema.json": Job,
    "outcome.schema.json": Outcome,
    "status.schema.json": StatusEntry,
}


def render(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode="validation" if model is Job else "serialization"),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMA_FILES.items():
        (directory / name).write_text(render(model), encoding="utf-8")


if __name__ == "__main__":
    write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas"))
