"""Every fault kind, observed by an httpx client over real HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devenv.processes import sandbox_process
from sandbox.faults import TokenBucket
from tests.contract_cases import BASE, variant
from tests.sandbox_client import BASIC, api_error, lookup, send, set_faults

ONE_SMS = [BASE["SMS"]]
CONVERSION_PATH = "/api/v1/flashcall-conversion"


def sms(count: int) -> list[dict[str, object]]:
    return [BASE["SMS"]] * count


def statuses(sandbox: httpx.Client) -> dict[str, int]:
    return dict(sandbox.get("/_sandbox/stats").json()["requestsByStatus"])


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_status_for_the_next_n_requests(sandbox: httpx.Client, status: int) -> None:
    set_faults(sandbox, status={"status": status, "next": 2, "retryAfter": 3})
    first, second, third = (send(sandbox, ONE_SMS) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert first.headers["Retry-After"] == "3"
    if status == 503:
        assert api_error(first) == (503, 5030, "Url shortener is unavailable")
    received = sandbox.get("/_sandbox/received").json()
    assert len(received) == 1
    assert received[0]["requestIndex"] == 2


def test_status_for_a_fraction_of_requests(sandbox: httpx.Client) -> None:
    set_faults(sandbox, status={"status": 500, "fraction": 0.5})
    codes = [send(sandbox, ONE_SMS).status_code for _ in range(200)]
    assert set(codes) == {200, 500}
    assert 60 <= codes.count(500) <= 140
    assert len(sandbox.get("/_sandbox/received").json()) == codes.count(200)


def test_latency_is_added(sandbox: httpx.Client) -> None:
    set_faults(sandbox, latencyMs=300)
    started = time.monotonic()
    assert send(sandbox, ONE_SMS).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_an_answer_delay_comes_after_the_messages_exist(sandbox: httpx.Client) -> None:
    set_faults(sandbox, answerDelayMs=800)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(send, sandbox, ONE_SMS)
        time.sleep(0.4)
        assert len(sandbox.get("/_sandbox/received").json()) == 1  # created, not answered
        assert not answer.done()
        assert answer.result().status_code == 200
    assert time.monotonic() - started >= 0.8


def test_hang_reads_the_body_and_never_answers(sandbox: httpx.Client) -> None:
    set_faults(sandbox, hangNext=1)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.post("/api/v1/message", json=ONE_SMS, headers=BASIC, timeout=0.5)
    assert send(sandbox, ONE_SMS).status_code == 200
    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["requestsByStatus"] == {"hung": 1, "200": 1}
    assert stats["messagesRecorded"] == 1


def test_drop_closes_the_connection(sandbox: httpx.Client) -> None:
    set_faults(sandbox, dropNext=1)
    with pytest.raises(httpx.RemoteProtocolError):
        send(sandbox, ONE_SMS)
    assert send(sandbox, ONE_SMS).status_code == 200
    assert sandbox.get("/_sandbox/stats").json()["requestsByStatus"] == {"dropped": 1, "200": 1}


def test_rejected_destination_sinks_its_whole_request(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rejectDestinations="^1999")
    body = [BASE["SMS"]] * 10 + [variant("SMS", destination="19995550000")]
    assert api_error(send(sandbox, body)) == (422, 4220, "Invalid msisdn")
    assert send(sandbox, [BASE["SMS"]] * 10).status_code == 200
    assert len(sandbox.get("/_sandbox/received").json()) == 10


def test_per_item_codes(sandbox: httpx.Client) -> None:
    set_faults(
        sandbox,
        itemCodes=[{"destination": "^1777", "code": 4041}, {"destination": "^1888", "code": 500}],
    )
    body = [
        BASE["SMS"],
        variant("SMS", destination="17775550000"),
        variant("SMS", destination="18885550000"),
        BASE["SMS"],
    ]
    response = send(sandbox, body)
    assert response.status_code == 200
    result = response.json()
    assert result["errors"] is True
    assert [i["code"] for i in result["items"]] == [201, 4041, 500, 201]
    assert "messageUuid" not in result["items"][1]
    received = sandbox.get("/_sandbox/received").json()
    assert [r["messageUuid"] for r in received] == [
        result["items"][0]["messageUuid"],
        result["items"][3]["messageUuid"],
    ]


def test_faults_take_effect_at_once_and_clear(sandbox: httpx.Client) -> None:
    set_faults(sandbox, status={"status": 502, "fraction": 1.0})
    assert send(sandbox, ONE_SMS).status_code == 502
    assert sandbox.delete("/_sandbox/faults").json()["status"] is None
    assert send(sandbox, ONE_SMS).status_code == 200


@pytest.mark.parametrize(
    "faults",
    [
        {"status": {"status": 418, "next": 1}},
        {"status": {"status": 500}},
        {"hangNext": -1},
        {"rejectDestinations": "("},
        {"unknown": 1},
        {"rateLimit": {"perSecond": 0, "burst": 10}},
        {"rateLimit": {"perSecond": 1, "burst": 0}},
        {"rateLimit": {"perSecond": 1}},
        {"rateLimit": {"perSecond": 1, "burst": 1, "per": "minute"}},
    ],
    ids=[
        "status not offered",
        "never fires",
        "negative",
        "bad regex",
        "unknown fault",
        "no rate",
        "empty bucket",
        "no burst",
        "unknown rate field",
    ],
)
def test_bad_fault_settings_are_refused(sandbox: httpx.Client, faults: dict[str, object]) -> None:
    assert sandbox.put("/_sandbox/faults", json=faults).status_code == 400


def test_faults_from_the_command_line() -> None:
    args = ["--token", "t", "--faults", '{"status": {"status": 503, "next": 1}}']
    with sandbox_process(args) as server, httpx.Client(base_url=server.url) as client:
        headers = {"Authorization": "Basic t"}
        assert client.post("/api/v1/message", json=ONE_SMS, headers=headers).status_code == 503
        assert client.post("/api/v1/message", json=ONE_SMS, headers=headers).status_code == 200


def test_longer_flashcall_codes_from_the_command_line() -> None:
    args = ["--token", "t", "--flashcall-max-digits", "6"]
    with sandbox_process(args) as server, httpx.Client(base_url=server.url) as client:
        body = [variant("FLASHCALL", content="123456")]
        response = client.post("/api/v1/message", json=body, headers={"Authorization": "Basic t"})
        assert response.status_code == 200


def test_a_rate_limit_lets_a_burst_through_then_answers_429(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rateLimit={"perSecond": 0.1, "burst": 4})
    assert send(sandbox, sms(3)).status_code == 200
    assert send(sandbox, sms(1)).status_code == 200
    refused = send(sandbox, sms(3))
    assert (refused.status_code, refused.text) == (429, "Too Many Requests")
    assert 28 <= int(refused.headers["Retry-After"]) <= 30  # 3 tokens at 0.1 a second
    one = send(sandbox, sms(1))
    assert one.status_code == 429
    assert 9 <= int(one.headers["Retry-After"]) <= 10
    conversion = send(sandbox, [BASE["FLASHCALL_CONVERSION"]], CONVERSION_PATH)
    assert conversion.status_code == 429  # one bucket for the account
    assert lookup(sandbox).status_code == 200  # lookups are not sends
    assert len(sandbox.get("/_sandbox/received").json()) == 4
    assert statuses(sandbox) == {"200": 2, "429": 3}


def test_the_bucket_refills_and_a_refused_request_takes_no_tokens(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rateLimit={"perSecond": 4, "burst": 2})
    assert send(sandbox, sms(2)).status_code == 200
    refused = send(sandbox, sms(2))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    time.sleep(0.3)  # 1.2 tokens: the refused request took none
    assert send(sandbox, sms(1)).status_code == 200
    time.sleep(0.6)
    assert send(sandbox, sms(2)).status_code == 200
    received = sandbox.get("/_sandbox/received").json()
    assert [r["requestIndex"] for r in received] == [0, 0, 2, 3, 3]


def test_a_request_larger_than_the_burst_never_passes(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rateLimit={"perSecond": 1000, "burst": 3})
    refused = send(sandbox, sms(4))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert send(sandbox, sms(3)).status_code == 200
    assert sandbox.get("/_sandbox/received").json()[0]["requestIndex"] == 1


def test_a_422_takes_its_tokens(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rateLimit={"perSecond": 0.1, "burst": 2})
    bad = variant("SMS", destination="not a number")
    assert send(sandbox, [bad, bad]).status_code == 422
    assert send(sandbox, sms(1)).status_code == 429


def test_clearing_the_faults_lifts_the_limit(sandbox: httpx.Client) -> None:
    set_faults(sandbox, rateLimit={"perSecond": 0.1, "burst": 1})
    assert send(sandbox, sms(1)).status_code == 200
    assert send(sandbox, sms(1)).status_code == 429
    assert sandbox.delete("/_sandbox/faults").json()["rateLimit"] is None
    assert send(sandbox, sms(5)).status_code == 200
    set_faults(sandbox, rateLimit={"perSecond": 0.1, "burst": 1})  # set again: a full bucket
    assert send(sandbox, sms(1)).status_code == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 10, clock)
    assert bucket.take(10) is None
    assert bucket.take(1) == 0.5
    clock.now += 0.5
    assert bucket.take(1) is None
    assert bucket.take(4) == 2.0
    clock.now += 100  # refills up to the bucket's size only
    assert bucket.take(10) is None
    assert bucket.take(1) == 0.5
    assert bucket.take(11) == float("inf")
