"""The Authorization header, as the API reads it.

The docs show `Basic {TOKEN_1}` for messages and `Bearer {TOKEN_1}` for conversions, while
notes.md says every endpoint takes Basic and clients in the wild use Basic for conversions
too. A real server most plausibly accepts Basic everywhere and keeps Bearer working where it
documents it: so Bearer is a wrong-type token (403) on /message only.
"""

from __future__ import annotations

from dataclasses import dataclass

ApiError = tuple[int, int, str]  # HTTP status, code, msg

NOT_AUTHENTICATED: ApiError = (401, 4010, "Not Authenticated")
BAD_CREDENTIALS: ApiError = (401, 4012, "Bad credentials")
ACCESS_DENIED: ApiError = (403, 4030, "Access Denied")


@dataclass(frozen=True)
class Credentials:
    token: str
    other_tokens: frozenset[str] = frozenset()  # valid keys of another type (TOKEN_2...)

    def check(self, header: str | None, schemes: tuple[str, ...]) -> ApiError | None:
        if not header:
            return NOT_AUTHENTICATED
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme not in ("Basic", "Bearer") or not value or " " in value:
            return NOT_AUTHENTICATED
        if value in self.other_tokens:
            return ACCESS_DENIED
        if value != self.token:
            return BAD_CREDENTIALS
        if scheme not in schemes:
            return ACCESS_DENIED
        return None
