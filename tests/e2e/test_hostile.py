"""Every hostile stream entry production brings, in one batch with good jobs: the good ones are
accepted, each bad one gets exactly one `rejected` outcome naming its problem, at once (no
takeover involved), and the broker never carries a job's body."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import redis

from tasks.keys import as_text
from tests.contract_cases import BASE, variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import wait_until
from tests.e2e.sandbox_view import received


def _job(job_id: Any, message: Any) -> str:
    return json.dumps({"jobId": job_id, "message": message})


def _sms(**patch: Any) -> dict[str, Any]:
    return variant("SMS", **patch)


# (name, raw `job` field, what its rejection must say)
HOSTILE: list[tuple[str, bytes, str]] = [
    ("channelType list", _job("t-list", _sms(channelType=["SMS"])).encode(), "channelType"),
    ("channelType object", _job("t-obj", _sms(channelType={"a": 1})).encode(), "channelType"),
    ("callbackEvents [{}]", _job("ev-obj", _sms(callbackEvents=[{}])).encode(), "callbackEvents"),
    (
        "callbackEvents [[sent]]",
        _job("ev-list", _sms(callbackEvents=[["sent"]])).encode(),
        "callbackEvents",
    ),
    ("tags [[]]", _job("tags-list", _sms(tags=[[]])).encode(), "tags"),
    (
        "lone surrogate",
        b'{"jobId": "surrogate", "message": {"channelType": "SMS", "senderName": "S", '
        b'"destination": "14085553911", "content": "hi \\ud83d"}}',
        "surrogate",
    ),
    (
        "not UTF-8",
        json.dumps(
            {"jobId": "latin1", "message": _sms(content="caf\u00e9")}, ensure_ascii=False
        ).encode("latin-1"),
        "not UTF-8",
    ),
    (
        "5,000-digit number",
        _job("bignum", _sms(ttl=0)).replace('"ttl": 0', '"ttl": 1' + "0" * 5000).encode(),
        "too large",
    ),
    (
        "nested 1,000 deep",
        _job("deep", _sms(tags="[" * 1000))
        .replace('"' + "[" * 1000 + '"', "[" * 1000 + "]" * 1000)
        .encode(),
        "nested deeper",
    ),
    ("NaN", _job("nan", _sms(ttl=0)).replace('"ttl": 0', '"ttl": NaN').encode(), "not valid JSON"),
    ("10 MB content", _job("ten-mb", _sms(content="x" * 10_000_000)).encode(), "MAX_JOB_BYTES"),
    ("jobId a number", _job(42, BASE["SMS"]).encode(), "jobId: must be a string"),
    ("jobId empty", _job("", BASE["SMS"]).encode(), "jobId: must be a string"),
    ("jobId with a space", _job("a b", BASE["SMS"]).encode(), "jobId: must be a string"),
    ("jobId 10 MB", _job("j" * 10_000_000, BASE["SMS"]).encode(), "MAX_JOB_BYTES"),
    ("a JSON array", b"[1, 2]", "not a JSON object"),
    ("not JSON", b"{oops", "not valid JSON"),
    ("unknown channel", _job("viber", _sms(channelType="VIBER")).encode(), "channelType"),
    (
        "wrong stream",
        _job("flash", BASE["FLASHCALL"]).encode(),
        "a FLASHCALL job on the SMS stream",
    ),
]


def test_hostile_entries_and_good_jobs_in_one_batch(e2e: E2E) -> None:
    stream = e2e.keys.jobs("SMS")
    good = [f"good-{i}" for i in range(20)]
    for job_id in good[:10]:
        e2e.producer.enqueue({"jobId": job_id, "message": BASE["SMS"]})
    bad_entries: dict[str, str] = {}
    for name, raw, _ in HOSTILE:
        bad_entries[as_text(e2e.redis.xadd(stream, {"job": raw}))] = name
    no_field = as_text(e2e.redis.xadd(stream, {"payload": "x"}))
    no_job_id = as_text(e2e.redis.xadd(stream, {"job": json.dumps({"message": BASE["SMS"]})}))
    twice = _job("twice", BASE["SMS"])
    e2e.redis.xadd(stream, {"job": twice})
    e2e.redis.xadd(stream, {"job": twice})
    for job_id in good[10:]:
        e2e.producer.enqueue({"jobId": job_id, "message": BASE["SMS"]})

    worker = e2e.start_worker(SMS_LINGER_MS="1000")
    expected = len(good) + len(HOSTILE) + 3  # no field, no jobId, "twice" once
    by_job = e2e.outcomes(expected, timeout=30)

    assert all(by_job[j].status == "accepted" for j in good)
    assert by_job["twice"].status == "accepted"
    assert by_job[no_job_id].status == "accepted"  # no jobId: the entry id stands for it
    assert by_job[no_field].status == "rejected"
    by_entry = {o.entryId: o for o in by_job.values()}
    for entry_id, name in bad_entries.items():
        outcome = by_entry[entry_id]
        says = next(s for n, _, s in HOSTILE if n == name)
        assert outcome.status == "rejected", name
        assert outcome.error is not None
        assert says in outcome.error.msg, (name, outcome.error.msg)
        assert len(outcome.error.msg) < 1000, name  # a hostile value is never echoed whole
        assert outcome.httpStatus is None
    for job_id in ("surrogate", "latin1", "bignum", "42"):
        assert job_id not in by_job  # an unreadable job is named by its entry id...
    assert by_job["t-list"].entryId in bad_entries  # ...a readable one by its jobId
    assert len(received(e2e.sandbox)) == len(good) + 2
    log = worker.log.read_text()
    assert "took over" not in log  # rejected at once: no batch died, nothing was taken over
    assert "Traceback" not in log
    assert worker.process.poll() is None


def test_the_broker_carries_references_never_bodies(e2e: E2E, redis_url: str) -> None:
    """Tasks name their batch: a code, or a 10 MB body, never passes through the broker (nor
    Flower, nor `celery inspect`, which show task arguments)."""
    tasks: list[Any] = []
    stop, watching = threading.Event(), threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(redis_url).monitor() as monitor:  # type: ignore[no-untyped-call]
            for command in monitor.listen():
                watching.set()
                words = command["command"].split(" ", 2)
                if words[0] == "LPUSH" and words[1].strip('"').startswith(e2e.keys.celery):
                    tasks.append(command["command"])
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wait_until(lambda: bool(e2e.redis.ping()) and watching.is_set(), 10, "MONITOR watching")
    for i in range(5):
        e2e.producer.enqueue({"jobId": f"c-{i}", "message": _sms(content=f"secret code {i}")})
    big = e2e.redis.xadd(e2e.keys.jobs("SMS"), {"job": _job("big", _sms(content="y" * 5_000_000))})
    e2e.start_worker()
    by_job = e2e.outcomes(6)
    stop.set()
    e2e.redis.ping()  # one more command, so the watcher sees the flag
    watcher.join(timeout=5)
    assert by_job["c-0"].status == "accepted"
    assert by_job[as_text(big)].status == "rejected"  # named by its entry id: too big to read
    assert tasks, "no task seen on the broker"
    for pushed in tasks:
        envelope = json.loads(pushed.split(" ", 2)[2])
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        assert args[0] == "SMS"
        assert args[1].startswith("b-")
        assert len(args) == 2
        assert len(pushed) < 5000
