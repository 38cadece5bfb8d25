"""The account balance of the sandbox: what `GET /api/v1/balance` answers.

It starts at `--balance` (in RUB, the currency of the sandbox's prices), goes down by the
price of each message created, and can be set (`PUT /_sandbox/balance`, any currencies) or
put back to its start (`DELETE`, or `/_sandbox/reset`). Charges go to its first currency.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, RootModel

from sandbox.auth import ApiError, Credentials

#: The currency of the sandbox's prices (the lookup's `price.currency`).
CURRENCY = "RUB"
DEFAULT_BALANCE = 1_000_000.0
MAX_BALANCE = 10**12

Amount = Annotated[Decimal, Field(allow_inf_nan=False, ge=-MAX_BALANCE, le=MAX_BALANCE)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Amounts(RootModel[dict[Currency, Amount]]):
    """The control API's body: `{"RUB": 12.5}`, one to ten currencies."""

    root: dict[Currency, Amount] = Field(min_length=1, max_length=10)


class Balance:
    def __init__(self, start: float = DEFAULT_BALANCE) -> None:
        self._start = {CURRENCY: Decimal(str(start))}
        self.amounts = dict(self._start)

    def set(self, amounts: dict[str, Decimal]) -> None:
        self.amounts = dict(amounts)

    def restore(self) -> None:
        self.amounts = dict(self._start)

    def charge(self, messages: int, price: float) -> None:
        """Created messages cost the plan's price each, from the first currency."""
        if messages:
            currency = next(iter(self.amounts))
            self.amounts[currency] -= messages * Decimal(str(price))

    def view(self) -> dict[str, Any]:
        """As the API shows it: numbers, to the cent (`{"RUB": 998.5}`)."""
        return {c: float(a.quantize(Decimal("0.01"))) for c, a in self.amounts.items()}


def any_key_type(credentials: Credentials, header: str | None) -> ApiError | None:
    """The balance takes a valid key of any type (notes.md): only no key or an unknown one is
    refused, as /message refuses them."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme == "Basic" and value.strip() in credentials.other_tokens:
        return None
    return credentials.check(header, ("Basic",))
