"""`revicom-dispatch sandbox`: a local Revicom Direct API with fault injection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from sandbox.app import Sandbox
from sandbox.auth import Credentials
from sandbox.balance import DEFAULT_BALANCE, MAX_BALANCE
from sandbox.delivery import Delivery
from sandbox.faults import Faults
from sandbox.server import DEFAULT_TOKEN, serve

Model = TypeVar("Model", bound=BaseModel)


def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    token: Annotated[str, typer.Option(help="The API key it accepts (TOKEN_1).")] = DEFAULT_TOKEN,
    other_token: Annotated[
        list[str] | None,
        typer.Option(help="A valid key of another type (answered 403 4030); repeatable."),
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(help="Faults at start, as the JSON of PUT /_sandbox/faults, or @file."),
    ] = None,
    flashcall_max_digits: Annotated[
        int, typer.Option(help="Longest FLASHCALL code the account may send.")
    ] = 4,
    delivery: Annotated[
        str | None,
        typer.Option(help="Delivery plan at start: the JSON of PUT /_sandbox/delivery, or @file."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for fraction-based faults and message fates.")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    balance: Annotated[
        float,
        typer.Option(
            help="The account balance at start (RUB); each message created costs its price."
        ),
    ] = DEFAULT_BALANCE,
) -> None:
    """Serve a local Revicom Direct API on HOST:PORT (controls under /_sandbox/)."""
    initial_faults = _option("--faults", Faults, faults)
    initial_delivery = _option("--delivery", Delivery, delivery)
    if not math.isfinite(balance) or abs(balance) > MAX_BALANCE:
        typer.echo(f"--balance: a number within ±{MAX_BALANCE:.0f}", err=True)
        raise typer.Exit(2)
    credentials = Credentials(token, frozenset(other_token or ()))
    sandbox = Sandbox(
        credentials, initial_faults, flashcall_max_digits, seed, initial_delivery, balance=balance
    )
    serve(sandbox, host, port, access_log)


def _option(name: str, model: type[Model], value: str | None) -> Model | None:
    """A JSON option (or `@file`) read as its control API's model; a bad one exits 2."""
    if not value:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        typer.echo(f"{name}: {error}", err=True)
        raise typer.Exit(2) from None
