"""Where a worker's CPU goes per message, measured inside the pool processes of a pod.

`bench.pipeline --profile` starts a pod with `--include bench.worker_profile`, so each node
imports this module, and `BENCH_PROFILE` in its environment says how each pool process
measures the `send_batch` tasks of the SMS channel it runs (writing what it has after each
task to `PROFILE_DIR/{pid}.*`):

- `phases`: the parts of a batch (`PHASES`) timed by wrapping their functions, and the whole
  task, on the process's CPU clock (waiting on Redis or the API costs nothing; the wall
  clock would count the time other processes had the core). Reading that clock is a system
  call (~0.7 µs here): each timed call's cost, measured on an empty call, is taken off its
  part, the parts it is within and the task.
- `cprofile`: cProfile on the CPU clock, every Python function. It inflates what makes many
  small calls (pydantic's Python validators, loops over characters) several times over: read
  it for which functions, not for how many µs.

`steps` times the per-message steps alone, outside any worker, for the inner splits.
"""

from __future__ import annotations

import cProfile
import functools
import json
import os
import pstats
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from celery.signals import task_postrun, task_prerun

from config import get_settings
from tasks import stamp, untrusted
from tasks.contract import ContractContext
from tasks.jobs import Job, parse_job
from tasks.keys import SEND_BATCH
from tasks.producer import wire_job
from tasks.segments import sms_segments
from worker import batch
from worker.api_client import ApiClient
from worker.batch import EntryReader, _finish, parse_entry
from worker.delivery import ItemResult
from worker.ledger import Ledger
from worker.ownership import HeldEntry, Ownership
from worker.rate_limits.limiter import RateLimiter

#: Where each pool process writes what it measured (relative to the bench's directory).
PROFILE_DIR = Path("bench-results/worker-profile")
#: The variable naming the mode (`phases` or `cprofile`) in the pod's environment.
MODE_VARIABLE = "BENCH_PROFILE"
#: The channel measured: the campaign's.
CHANNEL = "SMS"

#: The parts of a batch in `phases` mode: (label, where the function is looked up, its
#: name, clock). Each is inclusive: an indented part is within the one above it.
PHASES: tuple[tuple[str, Any, str, Callable[[], float]], ...] = (
    ("start: the held entries (start.lua)", Ownership, "start", time.process_time),
    ("read the entries (EntryReader.parse)", EntryReader, "parse", time.process_time),
    ("  stamp check (stamp.verify)", stamp, "verify", time.process_time),
    ("  full validation (unstamped: parse_entry)", batch, "parse_entry", time.process_time),
    ("claim the jobIds (claim.lua)", Ledger, "claim", time.process_time),
    ("send (deliver)", batch, "deliver", time.process_time),
    ("  rate limiter (units)", RateLimiter, "units", time.process_time),
    ("  rate limiter (wait: acquire.lua)", RateLimiter, "wait", time.process_time),
    ("  rate limiter (accepted)", RateLimiter, "accepted", time.process_time),
    ("  HTTP exchange (httpx)", ApiClient, "_timed", time.process_time),
    ("outcomes (_finish: outcome_json)", batch, "_finish", time.process_time),
    ("publish (finish.lua)", Ledger, "finish", time.process_time),
)
#: The whole task on the CPU clock, and what the parts leave of it.
TASK, OTHER = "the batch task, in all (CPU)", "the rest (Celery, logs, metrics, leases)"

#: cProfile's parts: (label, where: a file path's part, function names), inclusive.
PARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("the batch task, in all", "worker/batch.py", ("process_batch",)),
    ("  start: the held entries (start.lua)", "worker/ownership.py", ("start",)),
    ("  read the entries", "worker/batch.py", ("parse",)),
    ("    stamp check", "tasks/stamp.py", ("verify",)),
    ("    full validation (unstamped)", "worker/batch.py", ("parse_entry",)),
    ("  claim the jobIds (claim.lua)", "worker/ledger.py", ("claim",)),
    ("  send: deliver", "worker/delivery.py", ("deliver",)),
    ("    the HTTP exchange (httpx)", "worker/api_client.py", ("_timed",)),
    (
        "    rate limiter (units, acquire.lua...)",
        "worker/rate_limits/limiter.py",
        ("units", "wait", "accepted"),
    ),
    ("  outcomes (_finish: outcome_json)", "worker/batch.py", ("_finish",)),
    ("  publish: finish.lua (ledger.finish)", "worker/ledger.py", ("finish",)),
)

#: Keys of a process's figures: a phase's calls, and the CPU seconds one timed call costs.
CALLS, OVERHEAD = "#calls", "#overhead"

_state: dict[str, Any] = {}
_spent: dict[str, float] = {}  # phase → seconds (and its calls), in this process


def _timed(label: str, function: Callable[..., Any], clock: Callable[[], float]) -> Any:
    calls = f"{label} {CALLS}"

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            _spent[label] = _spent.get(label, 0.0) + clock() - started
            _spent[calls] = _spent.get(calls, 0) + 1

    return timed


def _install_phases() -> None:
    empty = _timed("empty", lambda: None, time.process_time)
    rounds = 20_000
    started = time.process_time()
    for _ in range(rounds):
        empty()
    overhead = (time.process_time() - started) / rounds
    _spent.clear()
    _spent[OVERHEAD] = overhead
    for label, owner, name, clock in PHASES:
        setattr(owner, name, _timed(label, getattr(owner, name), clock))


def _sms_batch(task: Any, args: Any) -> bool:
    return getattr(task, "name", None) == SEND_BATCH and bool(args) and args[0] == CHANNEL


@task_prerun.connect
def _start(task: Any = None, args: Any = None, **_: Any) -> None:
    if not _sms_batch(task, args):
        return
    mode = os.environ.get(MODE_VARIABLE, "phases")
    if _state.get("pid") != os.getpid():  # a new pool process: measured from here
        _state.clear()
        _state["pid"] = os.getpid()
        if mode == "cprofile":
            # Calls of C functions (dict.get, list.append) are not timed apart: timing each
            # one costs far more than the call.
            _state["profile"] = cProfile.Profile(time.process_time, 0.0, True, False)
        else:
            _install_phases()
    _state["task_started"] = time.process_time()
    if "profile" in _state:
        _state["profile"].enable()


@task_postrun.connect
def _stop(task: Any = None, args: Any = None, **_: Any) -> None:
    if not _sms_batch(task, args) or "task_started" not in _state:
        return
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    if "profile" in _state:
        profile: cProfile.Profile = _state["profile"]
        profile.disable()
        profile.dump_stats(PROFILE_DIR / f"{os.getpid()}.prof")
        return
    _spent[TASK] = _spent.get(TASK, 0.0) + time.process_time() - _state.pop("task_started")
    (PROFILE_DIR / f"{os.getpid()}.json").write_text(json.dumps(_spent))


def clear() -> None:
    """Remove what an earlier run measured."""
    for old in [*PROFILE_DIR.glob("*.prof"), *PROFILE_DIR.glob("*.json")]:
        old.unlink()


def phases(messages: int) -> dict[str, float]:
    """`phases` mode's parts in µs per message, summed over the pool processes, less the
    cost of timing them."""
    spent: dict[str, float] = {}
    for path in PROFILE_DIR.glob("*.json"):
        measured = json.loads(path.read_text())
        overhead = measured.pop(OVERHEAD)
        for label in [label for label, *_ in PHASES]:
            calls = measured.get(f"{label} {CALLS}", 0)
            # A timed call costs its own part, the part it is within, and the task.
            for part in {label, _parent(label), TASK} - {None}:
                measured[part] = measured.get(part, 0.0) - calls * overhead
        for label, seconds in measured.items():
            spent[label] = spent.get(label, 0.0) + seconds
    if TASK not in spent:
        raise RuntimeError(f"no phases in {PROFILE_DIR}")
    per = 1e6 / messages
    table = {TASK: round(spent[TASK] * per, 1)}
    table |= {label: round(spent.get(label, 0.0) * per, 1) for label, *_ in PHASES}
    top = sum(spent.get(label, 0.0) for label, *_ in PHASES if not label.startswith(" "))
    table[OTHER] = round((spent[TASK] - top) * per, 1)
    table["timed calls per message"] = round(
        sum(spent.get(f"{label} {CALLS}", 0) for label, *_ in PHASES) / messages, 1
    )
    return table


def _parent(label: str) -> str | None:
    """The part an indented part is within: the last unindented one before it."""
    if not label.startswith(" "):
        return None
    names = [name for name, *_ in PHASES]
    return next(name for name in reversed(names[: names.index(label)]) if name[0] != " ")


def table(messages: int) -> dict[str, Any]:
    """cProfile's parts in µs per message (inclusive) and the functions with the most CPU
    of their own, summed over the pool processes."""
    files = sorted(PROFILE_DIR.glob("*.prof"))
    if not files:
        raise RuntimeError(f"no profile in {PROFILE_DIR}")
    stats = pstats.Stats(*map(str, files))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    per = 1e6 / messages
    parts: dict[str, float] = {}
    for label, where, names in PARTS:
        # A recursive function's cumulative time is counted once (pstats already does).
        seconds = sum(
            ct for (f, _, fn), (_, _, _, ct, _) in raw.items() if fn in names and where in f
        )
        parts[label] = round(seconds * per, 1)
    own = sorted(raw.items(), key=lambda item: -item[1][2])[:15]
    return {
        "us_per_message": parts,
        "top_own_time_us_per_message": {
            f"{Path(f).name}:{line} {fn}": round(tt * per, 1)
            for (f, line, fn), (_, _, tt, _, _) in own
        },
    }


def steps(job: dict[str, Any], batch_size: int = 1000) -> dict[str, float]:
    """The per-message steps of a batch, each timed alone without the profiler on `job` as
    the producer writes it, stamped (µs per message, the best of 5 rounds): what the
    profile's shares are read against; full validation is what an unstamped job costs."""
    context = ContractContext(flashcall_code_max_digits=get_settings().flashcall_code_max_digits)
    record = wire_job(parse_job(job, context), get_settings().max_job_bytes)
    key = bytes(32)
    tag = stamp.context_tag(context)
    seal = stamp.seal(key, tag, record.channel, record.segments, record.wire)
    entry = HeldEntry(f"{int(time.time() * 1000)}-0", 1, record.wire, seal)
    reader = EntryReader(context, get_settings().max_job_bytes, key)
    parsed = reader.parse(entry, "SMS")
    if parsed.api is None:
        raise RuntimeError(f"the bench's job does not validate: {parsed.problem}")
    data = untrusted.load(record.wire)
    objects = [parsed.api] * batch_size
    accepted = ItemResult("accepted", 1, 200, "0b7e5c9e-3f1a-4d2b-9c8e-1a2b3c4d5e6f", 201)
    calls: dict[str, tuple[Callable[[], object], int]] = {
        "EntryReader.parse (stamped)": (lambda: reader.parse(entry, "SMS"), 1),
        "  stamp.verify": (lambda: stamp.verify(key, tag, seal, record.wire), 1),
        "parse_entry (unstamped: JSON, pydantic, checks)": (
            lambda: parse_entry(entry, "SMS", context, 10**6),
            1,
        ),
        "  untrusted.load (JSON)": (lambda: untrusted.load(record.wire), 1),
        "  Job.model_validate (pydantic)": (
            lambda: Job.model_validate(data, context=context),
            1,
        ),
        "request body: orjson.dumps of 1,000": (lambda: orjson.dumps(objects), batch_size),
        "_finish (outcome_json)": (lambda: _finish(parsed, "SMS", accepted), 1),
        "  sms_segments (now the producer's)": (
            lambda: sms_segments(str(parsed.api and parsed.api["content"])),
            1,
        ),
    }
    timed: dict[str, float] = {}
    for label, (call, per) in calls.items():
        number = max(1, 2000 // per)
        best = min(timeit.repeat(call, number=number, repeat=5))
        timed[label] = round(best / number / per * 1e6, 2)
    return timed
