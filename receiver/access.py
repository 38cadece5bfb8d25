"""Who may post callbacks: Basic credentials, and the networks callbacks come from.

The API signs nothing (notes.md): a callback is trusted for its credentials (carried in the
callbackUrl) and, optionally, its source address. Behind a proxy the peer is the proxy, so
`X-Forwarded-For` names the caller, but only when the peer is a proxy we trust; the header is
read from the right, past our own proxies, so a caller cannot forge its place in it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from config import Settings
from config.settings import networks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Access:
    credentials: tuple[bytes, bytes] | None  # username, password (UTF-8)
    allow_from: tuple[Network, ...]  # empty: any source
    trusted_proxies: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        credentials = None
        if settings.callback_username is not None and settings.callback_password is not None:
            credentials = (
                settings.callback_username.encode(),
                settings.callback_password.get_secret_value().encode(),
            )
        return cls(
            credentials,
            tuple(networks(settings.callback_allow_from)),
            tuple(networks(settings.callback_trusted_proxies)),
        )

    def authorized(self, header: str | None) -> bool:
        """Whether `Authorization` carries the credentials; both parts are compared in
        constant time, always, so timing tells nothing of which was wrong."""
        if self.credentials is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False  # no credentials to compare: nothing to learn from its timing
        user, _, password = decoded.partition(b":")  # a password may hold colons, a user not
        user_ok = hmac.compare_digest(user, self.credentials[0])
        password_ok = hmac.compare_digest(password, self.credentials[1])
        return scheme.lower() == "basic" and user_ok and password_ok

    def caller(self, peer: str | None, forwarded_for: str | None) -> Address | None:
        """The caller's address: the peer, or from a trusted proxy the rightmost address of
        `X-Forwarded-For` that is not one of our proxies. None when unreadable."""
        address = _address(peer)
        if address is None or not forwarded_for or not _within(address, self.trusted_proxies):
            return address
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop.strip())
            if address is None or not _within(address, self.trusted_proxies):
                return address
        return address

    def allowed(self, caller: Address | None) -> bool:
        if not self.allow_from:
            return True
        return caller is not None and _within(caller, self.allow_from)


def _address(text: str | None) -> Address | None:
    """An address, IPv4 when it is one mapped into IPv6 (`::ffff:185.203.96.7`, as a
    dual-stack socket shows an IPv4 peer)."""
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, nets: tuple[Network, ...]) -> bool:
    return any(address in net for net in nets)
