"""`make mutate`: mutmut over the modules that carry the promise, then a score per module.

mutmut (configured under `[tool.mutmut]` in pyproject.toml) mutates a copy of the code in
`mutants/` and runs, for each mutant, the fast tests that reach the mutated function (real
Redis, the real sandbox over HTTP; no worker processes). Its own output is a spinner, so it
goes to `mutants/run.log`; this prints what a reviewer needs: per module, how many mutants
the tests killed, and every survivor with its diff, marked when the README's "Equivalent
mutants" table explains it. Exit status 1 when a module is under the target, or a survivor
is unexplained.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

#: Killed / mutants each module must reach; every survivor must be explained as well.
TARGET = 0.85
MUTANTS = Path("mutants")
README = Path("README.md")
#: The README's table of equivalent mutants: rows whose first cell names mutants,
#: `| `worker.batch.x_isolate__mutmut_3`, `…` | why |`, under this heading.
EQUIVALENT_HEADING = "## Equivalent mutants"
_MUTANT = re.compile(r"`([\w.\u01c1]+__mutmut_\d+)`")


def main(argv: list[str]) -> int:
    """`--report`: only the table, from the verdicts of the last run."""
    if "--report" not in argv:
        mutmut = Path(sys.executable).with_name("mutmut")
        MUTANTS.mkdir(exist_ok=True)
        with (MUTANTS / "run.log").open("w") as log:
            run = subprocess.run([mutmut, "run"], stdout=log, stderr=subprocess.STDOUT, check=False)
        if run.returncode != 0:
            print(f"mutmut run failed (exit {run.returncode}); see {MUTANTS / 'run.log'}")
            return 1
    equivalent = equivalent_mutants(README.read_text(encoding="utf-8"))
    ok = True
    survivors: list[str] = []
    all_explained: set[str] = set()
    print(f"{'module':<22} {'mutants':>7} {'killed':>7} {'score':>7} {'explained':>9} {'other':>6}")
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = ".".join(meta.relative_to(MUTANTS).with_suffix("").with_suffix("").parts)
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        status = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(status.values())
        alive = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
        explained = [n for n in alive if n in equivalent and status[n] == "survived"]
        killed = counts["killed"] + counts["timeout"]
        score = killed / len(codes) if codes else 1.0
        ok &= score >= TARGET and len(explained) == len(alive)
        print(
            f"{module:<22} {len(codes):>7} {killed:>7} {score:>7.1%} {len(explained):>9} "
            f"{len(alive) - len(explained):>6}"
        )
        survivors += [f"{n} ({status[n]})" for n in alive if n not in explained]
        all_explained.update(explained)
    stale = sorted(equivalent - all_explained)
    if stale:
        ok = False
        print(f"\n{len(stale)} mutant(s) the README explains that did not survive (remove them):")
        print("\n".join(f"  {name}" for name in stale))
    if survivors:
        print(f"\n{len(survivors)} survivor(s) not in the README's table (mutmut show NAME):")
        print("\n".join(f"  {s}" for s in survivors))
    print(f"\ntarget: {TARGET:.0%} of mutants killed in each module: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def equivalent_mutants(readme: str) -> set[str]:
    """The mutants the README's table calls equivalent (the first cell of each row)."""
    section = readme.partition(EQUIVALENT_HEADING)[2].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in _MUTANT.findall(cell)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
