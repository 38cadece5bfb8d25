"""How every benchmark hands over its figures: a JSON file under bench-results/, and the same
figures printed, one section per part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(results: dict[str, Any], out: Path, width: int = 40) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for part, figures in results.items():
        print(part)
        if isinstance(figures, dict):
            for key, value in figures.items():
                print(f"  {key:{width}} {value}")
        else:
            print(f"  {figures}")
