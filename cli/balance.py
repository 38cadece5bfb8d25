"""`revicom-dispatch balance`: the account balance, asked of the API now."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from config import get_settings
from ops import account


def balance(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """The account balance per currency (GET /api/v1/balance). Exit 1 if it cannot be read."""
    amounts, problem, fix = account.balance(get_settings())
    if amounts is None:
        if as_json:
            typer.echo(json.dumps({"error": problem, "fix": fix}))
        else:
            typer.echo(f"balance: {problem} — {fix}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps({c: float(a) for c, a in amounts.items()}))
        return
    for currency, amount in sorted(amounts.items()):
        typer.echo(f"{currency} {amount:.2f}")
