"""`revicom-dispatch sandbox`: a local Revicom Direct API with fault injection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sandbox.app import Sandbox
from sandbox.auth import Credentials
from sandbox.faults import Faults
from sandbox.server import DEFAULT_TOKEN, serve


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
    seed: Annotated[int | None, typer.Option(help="Seed for fraction-based faults.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve a local Revicom Direct API on HOST:PORT (controls under /_sandbox/)."""
    initial = None
    if faults:
        text = Path(faults[1:]).read_text() if faults.startswith("@") else faults
        try:
            initial = Faults.model_validate_json(text)
        except ValidationError as error:
            typer.echo(f"--faults: {error}", err=True)
            raise typer.Exit(2) from None
    credentials = Credentials(token, frozenset(other_token or ()))
    serve(Sandbox(credentials, initial, flashcall_max_digits, seed), host, port, access_log)
