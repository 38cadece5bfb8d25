"""`python -m chaos [--fast] [--only NAME ...]`: run the matrix, print the table, exit 1 if a
row broke the promise. Figures go to bench-results/chaos.json as well."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from chaos.rig import Row
from chaos.scenarios import FAST, FULL, SCENARIOS

COLUMNS = (
    "scenario",
    "jobs",
    "lost",
    "jobs with >1 outcome",
    "double sends (in flight at a kill)",
    "dead letters",
    "expired",
    "drain s",
    "notes",
)


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = (
            r.scenario,
            f"{r.jobs:,}",
            str(r.lost),
            str(r.multiple_outcomes),
            f"{r.double_sends} ({r.explained_double_sends})",
            str(r.dead_letters),
            str(r.expired),
            f"{r.drain_s:g}",
            r.notes,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    parser.add_argument("--fast", action="store_true", help="the small scale CI uses")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    options = parser.parse_args()
    scale = FAST if options.fast else FULL
    names = options.only or list(SCENARIOS)
    rows: list[Row] = []
    broken: list[str] = []
    with tempfile.TemporaryDirectory(prefix="revicom-chaos-") as tmp:
        for name in names:
            started = time.monotonic()
            print(f"chaos: {name} ...", flush=True)
            try:
                row = SCENARIOS[name](Path(tmp) / name, scale)
            except Exception:
                traceback.print_exc()
                broken.append(f"{name}: raised (logs in {tmp}/{name})")
                continue
            rows.append(row)
            verdict = "ok" if row.kept_the_promise else "BROKEN"
            print(f"chaos: {name} {verdict} in {time.monotonic() - started:.0f} s: {row}")
            if not row.kept_the_promise:
                broken.append(name)
    print()
    print(markdown(rows))
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    figures = {
        "scale": asdict(scale),
        "date": time.strftime("%Y-%m-%d"),
        "rows": [asdict(r) for r in rows],
    }
    (out / "chaos.json").write_text(json.dumps(figures, indent=2))
    if broken:
        print("\nbroken: " + "; ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
