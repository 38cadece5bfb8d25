"""The callback receiver, a real process on 127.0.0.1 and a real Redis: what it records, and
a clear 4xx (never a 500, nothing recorded) for every request it refuses."""

from __future__ import annotations

import base64
import ipaddress
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from config import Settings
from devenv.processes import free_port, receiver_process
from receiver.access import Access
from tasks.keys import Keys
from tasks.statuses import iter_statuses

USER, PASSWORD = "dlr", "s3cret-pass"
AUTH = (USER, PASSWORD)
MAX_BYTES, MAX_EVENTS = 65_536, 200


@pytest.fixture(scope="module")
def module_keys(redis_url: str) -> Iterator[Keys]:
    keys = Keys(f"test-{uuid.uuid4().hex[:12]}")
    yield keys
    client = redis.Redis.from_url(redis_url)
    stale = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
    if stale:
        client.delete(*stale)


def receiver_env(redis_url: str, keys: Keys, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "CALLBACK_USERNAME": USER,
        "CALLBACK_PASSWORD": PASSWORD,
        "CALLBACK_MAX_BODY_BYTES": str(MAX_BYTES),
        "CALLBACK_MAX_EVENTS": str(MAX_EVENTS),
        **settings,
    }


@pytest.fixture(scope="module")
def receiver(redis_url: str, module_keys: Keys) -> Iterator[httpx.Client]:
    with (
        receiver_process(receiver_env(redis_url, module_keys)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def known(client: redis.Redis, keys: Keys, job: str = "") -> str:
    """A message the worker accepted (its mapping, as finish.lua writes it)."""
    message = str(uuid.uuid4())
    client.hset(
        keys.message(message), mapping={"job": job or message, "channel": "SMS", "accepted": 1}
    )
    return message


def ev(message: str, status: str = "delivered", event: str = "delivered", **extra: Any) -> Any:
    return {
        "message_uuid": message,
        "channel_type": "SMS",
        "callback_event": event,
        "status": status,
        "status_time": "2026-11-24T10:00:00Z",
        **extra,
    }


def statuses_of(client: redis.Redis, keys: Keys, message: str) -> list[dict[str, Any]]:
    return [e.model_dump() for _, e in iter_statuses(client, keys) if e.messageUuid == message]


def test_events_are_recorded_once_and_answered_with_counts(
    receiver: httpx.Client, client: redis.Redis, module_keys: Keys
) -> None:
    message = known(client, module_keys, "job-1")
    body = [ev(message, "sent", "sent"), ev(message, error_code=None), ev(message)]
    first = receiver.post("/callbacks", json=body, auth=AUTH)
    assert first.status_code == 200
    assert first.json() == {"received": 3, "recorded": 2, "duplicates": 1, "stale": 0, "parked": 0}
    again = receiver.post("/callbacks", json=body, auth=AUTH)
    assert again.json()["duplicates"] == 3
    found = statuses_of(client, module_keys, message)
    assert [(e["status"], e["final"], e["jobId"]) for e in found] == [
        ("sent", False, "job-1"),
        ("delivered", True, "job-1"),
    ]
    assert found[0]["source"] == "callback"
    assert found[0]["receivedAt"].endswith("Z")


def test_a_time_in_another_spelling_is_the_same_event(
    receiver: httpx.Client, client: redis.Redis, module_keys: Keys
) -> None:
    message = known(client, module_keys)
    spellings = ["2026-11-24T13:00:00+03:00", "2026-11-24T10:00:00", "2026-11-24T10:00:00.000Z"]
    body = [ev(message, status_time=t) for t in spellings] + [ev(message)]
    answer = receiver.post("/callbacks", json=body, auth=AUTH).json()
    assert (answer["recorded"], answer["duplicates"]) == (1, 3)
    assert statuses_of(client, module_keys, message)[0]["statusTime"] == "2026-11-24T10:00:00Z"


def test_a_status_the_api_adds_one_day_is_taken_and_changes_nothing(
    receiver: httpx.Client, client: redis.Redis, module_keys: Keys
) -> None:
    message = known(client, module_keys)
    body = [ev(message, "expired", "bounce"), ev(message, "sent", "sent")]
    answer = receiver.post("/callbacks", json=body, auth=AUTH)
    assert answer.json() == {"received": 2, "recorded": 1, "duplicates": 0, "stale": 1, "parked": 0}


def test_an_unknown_message_is_parked(
    receiver: httpx.Client, client: redis.Redis, module_keys: Keys
) -> None:
    message = str(uuid.uuid4())
    answer = receiver.post("/callbacks", json=[ev(message)], auth=AUTH)
    assert answer.json()["parked"] == 1
    assert client.llen(module_keys.parked(message)) == 1


@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong"), ("other", PASSWORD), (USER, PASSWORD + "x"), ("", "")],
)
def test_bad_credentials_are_refused(
    receiver: httpx.Client, client: redis.Redis, module_keys: Keys, auth: Any
) -> None:
    message = known(client, module_keys)
    answer = receiver.post("/callbacks", json=[ev(message)], auth=auth)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert statuses_of(client, module_keys, message) == []


@pytest.mark.parametrize(
    "header",
    ["Bearer " + PASSWORD, "Basic", "Basic !!!", "Basic " + base64.b64encode(b"dlr").decode()],
)
def test_unreadable_authorization_is_refused(receiver: httpx.Client, header: str) -> None:
    answer = receiver.post("/callbacks", content=b"[]", headers={"Authorization": header})
    assert answer.status_code == 401


BAD_BODIES: list[tuple[bytes, int, str]] = [
    (b"", 400, "not valid JSON"),
    (b"{", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[NaN]", 400, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, "not valid JSON"),
    (b'{"message_uuid": "x"}', 400, "JSON array"),
    (b"null", 400, "JSON array"),
    (b"[1]", 400, "event 0"),
    (b"[[]]", 400, "event 0"),
    (orjson.dumps([ev("u-1"), ev("u-2", status="LOST")]), 400, "event 1: status"),
    (orjson.dumps([ev("u-1", status_time=1700000000)]), 400, "event 0: status_time"),
    (orjson.dumps([ev("u-1", status_time="yesterday")]), 400, "event 0: status_time"),
    (orjson.dumps([ev("u-1", status_time="9" * 200)]), 400, "event 0: status_time"),
    (orjson.dumps([ev("u-1", status_time="0001-01-01T00:00:00+14:00")]), 400, "status_time"),
    (orjson.dumps([ev("u-1", status_time="9999-12-31T23:59:59-14:00")]), 400, "status_time"),
    (orjson.dumps([ev("u-1", status_time="2026-11-24")]), 400, "event 0: status_time"),
    (orjson.dumps([ev("u-1", error_code="6969")]), 400, "event 0: error_code"),
    (orjson.dumps([ev("u-1", error_code=2**40)]), 400, "event 0: error_code"),
    (b'[{"message_uuid": "u-1", "error_code": 1e999}]', 400, "not valid JSON"),
    (orjson.dumps([ev("u-1", error_code=True)]), 400, "event 0: error_code"),
    (orjson.dumps([ev("u-1", callback_event="bounce-back")]), 400, "event 0: callback_event"),
    (orjson.dumps([ev("u 1")]), 400, "event 0: message_uuid"),
    (orjson.dumps([ev("u-1:*")]), 400, "event 0: message_uuid"),
    (orjson.dumps([ev("x" * 65)]), 400, "event 0: message_uuid"),
    (orjson.dumps([{k: v for k, v in ev("u-1").items() if k != "status"}]), 400, "status"),
    (orjson.dumps([ev("u-1", price={"totalPrice": "a lot"})]), 400, "price.totalPrice"),
    (orjson.dumps([ev("u-1", channel_type=["SMS"])]), 400, "channel_type"),
    (b'[{"message_uuid": "\\ud83d"}]', 400, "not valid JSON"),
    (b"x" * (MAX_BYTES + 1), 413, "over"),
    (b" " * (10 * 1024 * 1024), 413, "over"),
    (orjson.dumps([ev("u-1")] * (MAX_EVENTS + 1)), 413, "events, over the limit"),
]


@pytest.mark.parametrize(("body", "status", "says"), BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_a_bad_body_gets_a_clear_4xx_and_nothing_is_recorded(
    *,
    receiver: httpx.Client,
    client: redis.Redis,
    module_keys: Keys,
    body: bytes,
    status: int,
    says: str,
) -> None:
    before = client.xlen(module_keys.statuses), client.zcard(module_keys.parked_index)
    answer = receiver.post(
        "/callbacks", content=body, auth=AUTH, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert (client.xlen(module_keys.statuses), client.zcard(module_keys.parked_index)) == before


def test_a_hundred_thousand_events_are_refused(receiver: httpx.Client) -> None:
    body = orjson.dumps([ev(f"u-{i}") for i in range(100_000)])
    assert receiver.post("/callbacks", content=body, auth=AUTH).status_code == 413


def test_a_body_without_content_length_is_bounded_as_it_arrives(receiver: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    answer = receiver.post("/callbacks", content=chunks(), auth=AUTH)
    assert answer.status_code == 413


def test_probes_and_metrics(receiver: httpx.Client) -> None:
    assert receiver.get("/healthz").text == "ok"
    assert receiver.get("/readyz").status_code == 200
    page = receiver.get("/metrics").text
    assert 'revicom_callback_requests_total{outcome="unauthorized"}' in page
    assert 'revicom_callback_requests_total{outcome="malformed"}' in page
    assert 'revicom_status_events_total{result="duplicate",source="callback"}' in page
    assert PASSWORD not in page


def test_redis_unreachable_is_503_so_the_sender_retries(tmp_path: Any) -> None:
    env = receiver_env(f"redis://127.0.0.1:{free_port()}/0", Keys("test-nowhere"))
    with (
        receiver_process(env, log=tmp_path / "receiver.log") as server,
        httpx.Client(base_url=server.url, timeout=20) as http,
    ):
        assert http.get("/readyz").status_code == 503
        answer = http.post("/callbacks", json=[ev("u-1")], auth=AUTH)
        assert answer.status_code == 503
        assert http.post("/callbacks", content=b"[", auth=AUTH).status_code == 400
    log = (tmp_path / "receiver.log").read_text()
    assert PASSWORD not in log
    assert "Traceback" not in log


def test_source_networks_and_forwarded_for(
    redis_url: str, client: redis.Redis, module_keys: Keys
) -> None:
    env = receiver_env(
        redis_url,
        module_keys,
        CALLBACK_ALLOW_FROM="185.203.96.7",
        CALLBACK_TRUSTED_PROXIES="127.0.0.0/8",
    )
    message = known(client, module_keys)
    with (
        receiver_process(env) as server,
        httpx.Client(base_url=server.url, timeout=10, auth=AUTH) as http,
    ):
        assert http.post("/callbacks", json=[ev(message)]).status_code == 403
        forwarded = {"X-Forwarded-For": "185.203.96.7"}
        assert http.post("/callbacks", json=[ev(message)], headers=forwarded).status_code == 200
        forged = {"X-Forwarded-For": "185.203.96.7, 8.8.8.8"}
        assert http.post("/callbacks", json=[ev(message)], headers=forged).status_code == 403
        # A proxy that adds a line of its own instead of appending: every line counts.
        two_lines = [("X-Forwarded-For", "185.203.96.7"), ("X-Forwarded-For", "203.0.113.66")]
        answer = http.post("/callbacks", json=[ev(message)], headers=httpx.Headers(two_lines))
        assert answer.status_code == 403


def test_the_caller_behind_trusted_proxies() -> None:
    access = Access.from_settings(
        Settings(callback_allow_from="185.203.96.0/24", callback_trusted_proxies="10.0.0.0/8, ::1")
    )
    assert access.caller("10.0.0.2", "185.203.96.7, 10.0.0.9") == ipaddress.ip_address(
        "185.203.96.7"
    )
    assert access.caller("192.0.2.1", "185.203.96.7") == ipaddress.ip_address("192.0.2.1")
    assert access.caller("10.0.0.2", None) == ipaddress.ip_address("10.0.0.2")
    assert access.caller("10.0.0.2", "junk") is None
    assert access.caller("10.0.0.2", "10.0.0.3") == ipaddress.ip_address("10.0.0.3")
    assert access.caller("::1", "185.203.96.9") == ipaddress.ip_address("185.203.96.9")
    # A dual-stack socket shows an IPv4 peer mapped into IPv6.
    assert access.caller("::ffff:10.0.0.2", "::ffff:185.203.96.7") == ipaddress.ip_address(
        "185.203.96.7"
    )
    assert not access.allowed(None)
    assert access.allowed(ipaddress.ip_address("185.203.96.200"))
    assert Access.from_settings(Settings()).allowed(None)
    assert Access.from_settings(Settings()).authorized(None)


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (basic(b"dlr", b"s3cret-pass"), True),
        ("basic " + base64.b64encode(b"dlr:s3cret-pass").decode(), True),
        ("Basic  " + base64.b64encode(b"dlr:s3cret-pass").decode() + " ", True),
        (basic(b"dlr", b"s3cret-pass:x"), False),
        (basic(b"dlr", b"s3cret-pas"), False),
        (basic(b"dl", b"s3cret-pass"), False),
        (basic(b"", b""), False),
        ("Bearer " + base64.b64encode(b"dlr:s3cret-pass").decode(), False),
        ("Basic " + base64.b64encode(b"dlr:s3cret-pass").decode() + "!", False),
        ("Basic", False),
        ("", False),
        (None, False),
    ],
)
def test_credentials_in_process(header: str | None, allowed: bool) -> None:
    access = Access.from_settings(Settings(callback_username=USER, callback_password=PASSWORD))
    assert access.authorized(header) is allowed


def test_a_password_may_hold_colons() -> None:
    access = Access.from_settings(Settings(callback_username="dlr", callback_password="a:b:c"))
    assert access.authorized(basic(b"dlr", b"a:b:c"))
    assert not access.authorized(basic(b"dlr", b"a:b"))
