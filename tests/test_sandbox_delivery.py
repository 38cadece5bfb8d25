"""The sandbox delivers: each message goes sending → sent → final on a timeline fixed at its
creation by the seed, and its callbacks reach a receiver on 127.0.0.1 over real HTTP."""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devenv.processes import sandbox_process
from tests.contract_cases import BASE, variant
from tests.sandbox_client import (
    Receiver,
    all_final,
    callback_stats,
    callbacks_done,
    send,
    set_delivery,
    wait_until,
)
from tests.test_hostile_contract import HOSTILE, json_values, keys

#: Quick steps, so that whole lifecycles take a fraction of a second.
FAST = {"sentAfterMs": 20, "finalAfterMs": 60}
EVENT_KEYS = {"message_uuid", "channel_type", "callback_event", "status", "status_time"}
STATUS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DEFAULT_PLAN = {
    "delivered": 1.0,
    "undelivered": 0.0,
    "unsent": 0.0,
    "sentAfterMs": 50,
    "finalAfterMs": 200,
    "readFraction": 0.0,
    "price": 1.5,
    "duplicateFraction": 0.0,
    "reorderFraction": 0.0,
    "dropFraction": 0.0,
    "retries": 5,
    "retryDelayMs": 1000,
    "callbackHosts": ["127.0.0.1", "localhost", "::1"],
}


def sms(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [variant("SMS", content=f"m{i}", **fields) for i in range(count)]


def uuids(response: httpx.Response) -> list[str]:
    return [item["messageUuid"] for item in response.json()["items"]]


# -- lifecycle --------------------------------------------------------------------------------


def test_a_message_is_sent_then_final_at_the_planned_times(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, sentAfterMs=150, finalAfterMs=400)
    send(sandbox, sms(3))
    seen: list[tuple[str, float, float]] = []  # (status, statusTime, receivedAt) of the first

    def final() -> bool:
        record = sandbox.get("/_sandbox/received").json()[0]
        if not seen or seen[-1][0] != record["status"]:
            seen.append((record["status"], record["statusTime"], record["receivedAt"]))
        return bool(record["status"] == "delivered")

    wait_until(final)
    assert [status for status, _, _ in seen] == ["sending", "sent", "delivered"]
    created = seen[0][1]
    assert 0 <= created - seen[0][2] < 0.1
    assert seen[1][1] - created == pytest.approx(0.15, abs=0.001)
    assert seen[2][1] - created == pytest.approx(0.4, abs=0.001)


def test_the_truth_is_drawn_at_creation_and_repeats_with_the_seed(sandbox: httpx.Client) -> None:
    plan = {"delivered": 0.6, "undelivered": 0.3, "unsent": 0.1, **FAST}

    def finals() -> list[str]:
        set_delivery(sandbox, **plan)
        send(sandbox, sms(300))
        truth = [r["finalStatus"] for r in sandbox.get("/_sandbox/received").json()]
        assert [r["status"] for r in all_final(sandbox)] == truth
        return truth

    first = finals()
    sandbox.post("/_sandbox/reset").raise_for_status()
    assert finals() == first
    counts = Counter(first)
    assert 140 <= counts["delivered"] <= 220
    assert 55 <= counts["undelivered"] <= 125
    assert 10 <= counts["unsent"] <= 55


def test_the_plan_applies_to_messages_created_after_it(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, delivered=0, undelivered=1, **FAST)
    send(sandbox, sms(2))
    set_delivery(sandbox, delivered=0, unsent=1, **FAST)
    send(sandbox, sms(2))
    assert [r["finalStatus"] for r in all_final(sandbox)] == ["undelivered"] * 2 + ["unsent"] * 2


def test_some_delivered_messages_of_chat_channels_are_read(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, readFraction=0.5, **FAST)
    send(sandbox, [variant("WHATSAPP", content__text=f"m{i}") for i in range(100)] + sms(20))
    records = all_final(sandbox)
    time.sleep(0.2)  # the reads come one finalAfterMs (60 ms) after the final status
    statuses = Counter(
        (r["message"]["channelType"], r["status"]) for r in sandbox.get("/_sandbox/received").json()
    )
    assert statuses[("SMS", "delivered")] == 20
    assert 30 <= statuses[("WHATSAPP", "read")] <= 70
    assert statuses[("WHATSAPP", "delivered")] == 100 - statuses[("WHATSAPP", "read")]
    assert all(r["finalStatus"] == "delivered" for r in records)


# -- the plan ---------------------------------------------------------------------------------


def test_the_plan_is_read_replaced_cleared_and_reset(sandbox: httpx.Client) -> None:
    assert sandbox.get("/_sandbox/delivery").json() == DEFAULT_PLAN
    answer = sandbox.put("/_sandbox/delivery", json={"undelivered": 0.5, "delivered": 0.5})
    assert answer.json() == {**DEFAULT_PLAN, "undelivered": 0.5, "delivered": 0.5}
    assert sandbox.get("/_sandbox/delivery").json()["undelivered"] == 0.5
    assert sandbox.delete("/_sandbox/delivery").json() == DEFAULT_PLAN
    set_delivery(sandbox, price=2)
    sandbox.post("/_sandbox/reset").raise_for_status()
    assert sandbox.get("/_sandbox/delivery").json() == DEFAULT_PLAN


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"delivered": 0.5}', "must be 1"),
        (b'{"undelivered": 1}', "must be 1"),
        (b'{"delivered": 1.5}', "less than or equal to 1"),
        (b'{"dropFraction": -0.1}', "greater than or equal to 0"),
        (b'{"sentAfterMs": 300, "finalAfterMs": 200}', "finalAfterMs"),
        (b'{"price": -1}', "greater than or equal to 0"),
        (b'{"price": NaN}', "finite number"),
        (b'{"price": 1e400}', "finite number"),
        (b'{"retries": 1.5}', "integer"),
        (b'{"retries": 100000000000000000000000}', "less than or equal to 100"),
        (b'{"sentAfterMs": "soon"}', "integer"),
        (b'{"bogus": 1}', "Extra inputs"),
        (b"[]", "object"),
        (b"", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        (b"[" * 5000, "Invalid JSON"),
    ],
)
def test_a_bad_plan_is_refused_with_400_and_changes_nothing(
    sandbox: httpx.Client, body: bytes, error: str
) -> None:
    answer = sandbox.put("/_sandbox/delivery", content=body)
    assert answer.status_code == 400
    assert error in json.dumps(answer.json()["errors"])
    assert sandbox.get("/_sandbox/delivery").json() == DEFAULT_PLAN


PLAN_KEYS = st.sampled_from(sorted(DEFAULT_PLAN)) | keys


def test_any_plan_body_gets_200_or_400(sandbox_url: str) -> None:
    with httpx.Client(base_url=sandbox_url) as client:

        @HOSTILE
        @given(
            st.dictionaries(PLAN_KEYS, json_values, max_size=6)
            | json_values
            | st.binary(max_size=60)
        )
        def check(body: Any) -> None:
            content = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
            answer = client.put("/_sandbox/delivery", content=content)
            assert answer.status_code in (200, 400), answer.text
            if answer.status_code == 200:
                client.delete("/_sandbox/delivery").raise_for_status()

        check()


def test_the_command_line_takes_a_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"delivered": 0, "unsent": 1}')
    for option in (plan.read_text(), f"@{plan}"):
        with sandbox_process(["--delivery", option]) as server:
            answer = httpx.get(f"{server.url}/_sandbox/delivery").json()
            assert (answer["delivered"], answer["unsent"]) == (0, 1)
    with pytest.raises(RuntimeError, match="exited with 2"), sandbox_process(["--delivery", "{}x"]):
        pass


# -- callbacks --------------------------------------------------------------------------------


def test_callbacks_reach_the_url_grouped_with_its_credentials(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, **FAST)
    with Receiver() as receiver:
        url = receiver.url("user:p%40ss", "/hook?client=7")
        both = sms(150, callbackUrl=url, callbackEvents=["sent", "delivered"])
        default = sms(2, callbackUrl=url)  # no callbackEvents: `delivered` only
        never = sms(1, callbackUrl=url, callbackEvents=["click"])  # no links: no click
        created = uuids(send(sandbox, [*both, *default, *never, BASE["SMS"]]))
        stats = callbacks_done(sandbox)
        posts = receiver.accepted()
    secret = base64.b64encode(b"user:p@ss").decode()
    assert {(p.path, p.authorization) for p in posts} == {("/hook?client=7", f"Basic {secret}")}
    assert len(posts) == 4  # 150 `sent` in two POSTs, then 152 `delivered` in two
    assert all(len(p.events) <= 100 for p in posts)
    events = [e for p in posts for e in p.events]
    assert Counter((e["message_uuid"], e["callback_event"]) for e in events) == Counter(
        [(u, "sent") for u in created[:150]] + [(u, "delivered") for u in created[:152]]
    )
    assert all(set(e) == EVENT_KEYS and STATUS_TIME.fullmatch(e["status_time"]) for e in events)
    assert {(e["channel_type"], e["callback_event"], e["status"]) for e in events} == {
        ("SMS", "sent", "sent"),
        ("SMS", "delivered", "delivered"),
    }
    assert stats == {
        "postsAttempted": 4,
        "postsOk": 4,
        "postsFailed": 0,
        "eventsSent": 302,
        "duplicatesSent": 0,
        "dropped": 0,
        "givenUp": 0,
        "notAllowed": 0,
        "pending": 0,
    }


def test_final_price_and_read_events(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, delivered=0.5, undelivered=0.5, readFraction=1, price=2.25, **FAST)
    with Receiver() as receiver:
        events = ["sent", "delivered", "read", "price"]
        body = [
            variant(
                "WHATSAPP", content__text=f"m{i}", callbackUrl=receiver.url(), callbackEvents=events
            )
            for i in range(40)
        ]
        send(sandbox, body)
        callbacks_done(sandbox)
        got = receiver.events()
    final = {r["messageUuid"]: r["finalStatus"] for r in sandbox.get("/_sandbox/received").json()}
    assert set(final.values()) == {"delivered", "undelivered"}
    for event in got:
        truth = final[event["message_uuid"]]
        expected = {"sent": "sent", "read": "read"}.get(event["callback_event"], truth)
        assert event["status"] == expected
        assert event.get("error_code") == (6969 if expected == "undelivered" else None)
        if event["callback_event"] == "price":
            price = {"totalPrice": 2.25, "currency": "RUB", "invoicedParts": 1, "final": True}
            assert event["price"] == price
    kinds = Counter(e["callback_event"] for e in got)
    delivered = list(final.values()).count("delivered")
    assert kinds == {"sent": 40, "delivered": 40, "price": 40, "read": delivered}


def test_an_unsent_message_has_no_sent_event(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, delivered=0, unsent=1, **FAST)
    with Receiver() as receiver:
        send(sandbox, sms(1, callbackUrl=receiver.url(), callbackEvents=["sent", "delivered"]))
        callbacks_done(sandbox)
        (event,) = receiver.events()
    assert (event["callback_event"], event["status"], event["error_code"]) == (
        "delivered",
        "unsent",
        6001,
    )


def test_a_failed_post_is_retried_with_the_same_events(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, retries=3, retryDelayMs=50, **FAST)
    with Receiver(statuses=[500, 503]) as receiver:
        created = uuids(send(sandbox, sms(3, callbackUrl=receiver.url())))
        stats = callbacks_done(sandbox)
        posts = receiver.posts
    assert [p.status for p in posts] == [500, 503, 200]
    assert posts[0].events == posts[1].events == posts[2].events
    assert [e["message_uuid"] for e in posts[2].events] == created
    assert (stats["postsAttempted"], stats["postsFailed"], stats["postsOk"]) == (3, 2, 1)
    assert (stats["eventsSent"], stats["givenUp"]) == (3, 0)


def test_events_are_given_up_after_the_retries(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, retries=2, retryDelayMs=20, **FAST)
    with Receiver(statuses=[500] * 10) as receiver:
        send(sandbox, sms(3, callbackUrl=receiver.url()))
        stats = callbacks_done(sandbox)
        assert len(receiver.posts) == 3
    assert (stats["postsAttempted"], stats["postsFailed"], stats["givenUp"]) == (3, 3, 3)
    assert stats["eventsSent"] == 0


def test_a_receiver_down_then_up_within_the_retries_gets_the_events(
    sandbox: httpx.Client,
) -> None:
    set_delivery(sandbox, retries=10, retryDelayMs=100, **FAST)
    receiver = Receiver()  # not listening yet: connections are refused
    send(sandbox, sms(5, callbackUrl=receiver.url()))
    wait_until(lambda: callback_stats(sandbox)["postsFailed"] >= 2)
    with receiver:
        stats = callbacks_done(sandbox)
        assert len(receiver.events()) == 5
    assert stats["eventsSent"] == 5
    assert stats["postsOk"] == 1
    assert stats["postsAttempted"] == stats["postsFailed"] + 1


def test_dropped_duplicated_and_reordered_events(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, dropFraction=0.2, duplicateFraction=0.2, reorderFraction=0.3, **FAST)
    with Receiver() as receiver:
        body = sms(200, callbackUrl=receiver.url(), callbackEvents=["sent", "delivered"])
        send(sandbox, body)
        stats = callbacks_done(sandbox)
        posts = receiver.accepted()
    arrivals: dict[tuple[str, str], list[int]] = {}
    for index, post in enumerate(posts):
        for event in post.events:
            arrivals.setdefault((event["message_uuid"], event["callback_event"]), []).append(index)
    assert stats["dropped"] + stats["eventsSent"] == 400
    assert 50 <= stats["dropped"] <= 110
    assert len(arrivals) == stats["eventsSent"]
    doubled = [posts for posts in arrivals.values() if len(posts) == 2]
    assert len(doubled) == stats["duplicatesSent"]
    assert 0.1 * len(arrivals) <= len(doubled) <= 0.3 * len(arrivals)
    assert all(first < copy for first, copy in doubled)  # the copy comes in a later POST
    assert all(len(posts) <= 2 for posts in arrivals.values())
    both = {u for u, event in arrivals if event == "sent" and (u, "delivered") in arrivals}
    late = {u for u in both if arrivals[u, "sent"][0] > arrivals[u, "delivered"][0]}
    assert 0.15 * len(both) <= len(late) <= 0.45 * len(both)
    assert stats["pending"] == stats["givenUp"] == 0


def test_callbacks_go_only_to_allowed_hosts(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, callbackHosts=["localhost"], **FAST)
    with Receiver() as receiver:
        send(sandbox, sms(2, callbackUrl="https://company.com/callback"))
        send(sandbox, sms(1, callbackUrl=receiver.url()))  # 127.0.0.1 is not localhost
        send(sandbox, sms(1, callbackUrl=receiver.url().replace("127.0.0.1", "LOCALHOST")))
        stats = callbacks_done(sandbox)
        assert len(receiver.events()) == 1
    assert (stats["notAllowed"], stats["eventsSent"]) == (3, 1)


def test_the_counters_clear_and_a_reset_forgets_pending_events(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, **FAST)
    with Receiver() as receiver:
        send(sandbox, sms(2, callbackUrl=receiver.url()))
        callbacks_done(sandbox)
        assert sandbox.delete("/_sandbox/callbacks").status_code == 204
        assert set(callback_stats(sandbox).values()) == {0}
        set_delivery(sandbox, sentAfterMs=300, finalAfterMs=300)
        send(sandbox, sms(2, callbackUrl=receiver.url()))
        assert callback_stats(sandbox)["pending"] == 2
        sandbox.post("/_sandbox/reset").raise_for_status()
        assert callback_stats(sandbox)["pending"] == 0
        time.sleep(0.4)
        assert len(receiver.events()) == 2  # only the first two
    assert sandbox.get("/_sandbox/received").json() == []
