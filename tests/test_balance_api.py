"""GET /api/v1/balance: the sandbox's answer over HTTP, the client's request, and the parser
that refuses any other shape of answer."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from config import Settings
from devenv.processes import sandbox_process
from tasks.balance_state import parse_balance
from tests.conftest import OTHER_TYPE_TOKEN, SANDBOX_TOKEN
from tests.contract_cases import variant
from tests.sandbox_client import BASIC, api_error, send, set_delivery, set_faults
from worker.api_client import ApiClient

PATH = "/api/v1/balance"


def balance(sandbox: httpx.Client) -> dict[str, float]:
    answer = sandbox.get(PATH, headers=BASIC)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_balance_takes_any_valid_key_and_refuses_the_rest(sandbox: httpx.Client) -> None:
    assert balance(sandbox) == {"RUB": 1_000_000.0}
    other = sandbox.get(PATH, headers={"Authorization": f"Basic {OTHER_TYPE_TOKEN}"})
    assert other.status_code == 200  # a key of another type still reads the balance
    assert api_error(sandbox.get(PATH)) == (401, 4010, "Not Authenticated")
    unknown = sandbox.get(PATH, headers={"Authorization": "Basic nope"})
    assert api_error(unknown) == (401, 4012, "Bad credentials")
    # /message still refuses the other key type: only the balance takes it.
    refused = send(
        sandbox, [variant("SMS")], headers={"Authorization": f"Basic {OTHER_TYPE_TOKEN}"}
    )
    assert refused.status_code == 403


def test_each_message_created_costs_its_price(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, price=2.25)
    set_faults(sandbox, itemCodes=[{"destination": "^7999", "code": 400}])
    body = [variant("SMS", content=f"m{i}") for i in range(3)]
    body.append(variant("SMS", destination="79990000000"))  # refused: costs nothing
    assert send(sandbox, body).status_code == 200
    assert balance(sandbox) == {"RUB": 1_000_000 - 3 * 2.25}
    rejected = send(sandbox, [variant("SMS", destination="bad")])  # a 422 creates nothing
    assert rejected.status_code == 422
    assert balance(sandbox) == {"RUB": 1_000_000 - 3 * 2.25}


def test_the_balance_is_set_restored_and_reset(sandbox: httpx.Client) -> None:
    put = sandbox.put("/_sandbox/balance", json={"USD": 12.5, "RUB": 3})
    assert put.json() == {"USD": 12.5, "RUB": 3.0}
    assert send(sandbox, [variant("SMS")]).status_code == 200
    assert balance(sandbox) == {"USD": 11.0, "RUB": 3.0}  # charged in the first currency
    assert sandbox.get("/_sandbox/balance").json() == {"USD": 11.0, "RUB": 3.0}
    assert sandbox.delete("/_sandbox/balance").json() == {"RUB": 1_000_000.0}
    sandbox.put("/_sandbox/balance", json={"RUB": -5}).raise_for_status()  # overdrawn
    assert balance(sandbox) == {"RUB": -5.0}
    sandbox.post("/_sandbox/reset").raise_for_status()
    assert balance(sandbox) == {"RUB": 1_000_000.0}


@pytest.mark.parametrize(
    "body",
    [{}, [], {"rub": 1}, {"RUB": "NaN"}, {"RUB": 1e13}, {"RUB": "x"}, {"RUB": None}],
)
def test_a_bad_balance_is_refused_by_the_control(sandbox: httpx.Client, body: Any) -> None:
    assert sandbox.put("/_sandbox/balance", json=body).status_code == 400
    assert balance(sandbox) == {"RUB": 1_000_000.0}


def test_faults_apply_to_the_balance(sandbox: httpx.Client) -> None:
    set_faults(sandbox, status={"status": 503, "next": 1, "retryAfter": 7})
    faulted = sandbox.get(PATH, headers=BASIC)
    assert faulted.status_code == 503
    assert balance(sandbox) == {"RUB": 1_000_000.0}


def test_the_client_asks_once_with_the_key_and_counts_it(sandbox_url: str) -> None:
    settings = Settings.model_validate(
        {"revicom_api_url": sandbox_url, "revicom_api_token": SANDBOX_TOKEN}
    )
    labels = {"endpoint": "GET /api/v1/balance", "status": "200"}
    before = REGISTRY.get_sample_value("revicom_api_request_seconds_count", labels) or 0.0
    api = ApiClient(settings)
    try:
        answer = api.balance(5.0)
    finally:
        api.close()
    assert (answer.status, answer.attempts) == (200, 1)
    assert parse_balance(answer.body) == {"RUB": Decimal("1000000.0")}
    assert REGISTRY.get_sample_value("revicom_api_request_seconds_count", labels) == before + 1


def test_the_client_reports_an_unreachable_api_without_retrying() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ConnectError("refused", request=request)

    settings = Settings.model_validate({"revicom_api_token": "t"})
    api = ApiClient(settings, transport=httpx.MockTransport(handler))
    answer = api.balance(1.0)
    assert (answer.status, answer.attempts, calls) == (None, 1, [PATH])
    assert answer.transport_error == "ConnectError: refused"


def test_the_parser_reads_the_documented_answer() -> None:
    assert parse_balance({"USD": 1200.00}) == {"USD": Decimal("1200.0")}
    assert parse_balance({"RUB": 0.1, "USD": -3}) == {"RUB": Decimal("0.1"), "USD": Decimal(-3)}


@pytest.mark.parametrize(
    "body",
    [
        None,
        "PONG",
        [{"USD": 1}],
        {},
        {"USD": True},
        {"USD": "1200"},
        {"USD": None},
        {"USD": {"amount": 1}},
        {"USD": [1]},
        {"USD": math.nan},
        {"USD": math.inf},
        {"USD": 10**400},
        {"USD": 1e300},
        {"usd": 1},
        {"US DOLLAR": 1},
        {"": 1},
        {f"C{i:02}": 1 for i in range(17)},
        {"USD": 1, "EUR": "x"},
    ],
)
def test_the_parser_refuses_any_other_shape(body: Any) -> None:
    assert parse_balance(body) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=20,
    )
)
def test_the_parser_never_raises(body: Any) -> None:
    amounts = parse_balance(body)
    if amounts is not None:
        assert all(a.is_finite() for a in amounts.values())


def test_the_starting_balance_is_a_sandbox_option() -> None:
    with sandbox_process(["--token", SANDBOX_TOKEN, "--balance", "12.5"]) as server:
        answer = httpx.get(f"{server.url}{PATH}", headers=BASIC, timeout=10)
    assert answer.json() == {"RUB": 12.5}
