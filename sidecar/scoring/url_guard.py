"""The SSRF guard of the image loader: which URLs may be fetched at all, and where they connect.

A URL must be well formed http(s) (a port in 1-65535, a valid host name or IP literal, no NUL or
control character), and its host must not resolve to a loopback, private, link-local (cloud
metadata), multicast, reserved or unspecified address, nor to an IPv6 form that carries one
(mapped, 6to4, NAT64, Teredo), unless the host is allowlisted.

The name is resolved once, when the connection is opened, and the connection goes to the address
that was checked (`guarded_transport`): a DNS answer that changes between the check and the
connect (rebinding) cannot slip a private address past the guard. TLS still verifies the
certificate against the host name, not the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx


class ImageRefused(Exception):
    """An image that cannot be used; the message is the flag's reason."""


async def check_destination(url: str, allow_hosts: Collection[str]) -> str:
    """The address a connection for `url` would go to, or ImageRefused: the URL is malformed,
    or its host resolves to a forbidden address and is not allowlisted."""
    host, port = check_url(url)
    return checked_address(host, await resolve(host, port), allow_hosts)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the one resolution a connection makes)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ImageRefused(f"unresolvable: {host}") from exc
    return [str(info[4][0]) for info in infos]


def checked_address(host: str, addresses: Iterable[str], allow_hosts: Collection[str]) -> str:
    """The address to connect to: the first one `host` resolved to, once every one of them has
    passed the guard (an allowlisted host passes as it is)."""
    found = list(addresses)
    if not found:
        raise ImageRefused(f"unresolvable: {host}")
    if host.lower() in allow_hosts:
        return found[0]
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError as exc:
            raise ImageRefused(f"unresolvable: {host} gave {text!r}") from exc
        if forbidden(address):
            carried = [str(a) for a in embedded_ipv4(address) if forbidden(a)]
            raise ImageRefused(
                f"forbidden_address: {host} resolves to {address}"
                + (f" (which carries {', '.join(carried)}) " if carried else " ")
                + "(loopback/private/link-local; allowlist the host in images.allow_hosts)"
            )
    return found[0]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens each connection to the address the guard checked, resolving the name only once."""

    def __init__(self, allow_hosts: Collection[str]) -> None:
        self._allow_hosts = allow_hosts
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve(host, port), timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        address = checked_address(host, addresses, self._allow_hosts)
        return await self._inner.connect_tcp(
            address, port, timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise ImageRefused("bad_url: unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, allow_hosts: Collection[str], max_connections: int) -> None:
        super().__init__()
        # httpx takes no network backend, so its pool is rebuilt around ours (same defaults).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(allow_hosts),
        )


def guarded_transport(
    allow_hosts: Collection[str], max_connections: int = 32
) -> httpx.AsyncBaseTransport:
    """An httpx transport whose connections go only where the guard allows."""
    return _GuardedTransport({h.lower() for h in allow_hosts}, max_connections)


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the last 32 bits


def embedded_ipv4(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and leads to: mapped (::ffff:a.b.c.d), 6to4
    (2002::/16), NAT64 (64:ff9b::/96) and Teredo (2001::/32, server and inverted client)."""
    found: list[ipaddress.IPv4Address] = []
    if isinstance(address, ipaddress.IPv4Address):
        return found
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if any(forbidden(inner) for inner in embedded_ipv4(address)):
        return True  # 6to4, NAT64 or Teredo of a loopback/private/... IPv4 address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # judged as the IPv4 address it is
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # shared/carrier-grade space: Alibaba's 100.100.100.200
    )


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of a well-formed http(s) URL; a malformed one is `bad_url`."""
    if has_control_character(url):
        raise ImageRefused("bad_url: contains a NUL or control character")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed bracket
        raise ImageRefused(f"bad_url: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ImageRefused(f"bad_url: scheme {parts.scheme or 'missing'} is not http(s)")
    host = (parts.hostname or "").lower()
    if not host:
        raise ImageRefused("bad_url: no host")
    try:
        port = parts.port
    except ValueError as exc:  # not a number, or out of range
        raise ImageRefused("bad_url: the port is not a number in 1-65535") from exc
    if port == 0:
        raise ImageRefused("bad_url: the port is not a number in 1-65535")
    if not _is_ip_literal(host):
        if "%" in host or " " in host:
            raise ImageRefused(f"bad_url: invalid host name {short(host)!r}")
        try:
            encoded = host.encode("idna")
        except UnicodeError as exc:  # an empty label (a..b) or one over 63 characters
            raise ImageRefused(f"bad_url: invalid host name {short(host)!r}") from exc
        if len(encoded.rstrip(b".")) > 253:
            raise ImageRefused("bad_url: host name longer than 253 characters")
    return host, port or (443 if parts.scheme.lower() == "https" else 80)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def has_control_character(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def short(key: str) -> str:
    key = key if len(key) <= 120 else key[:117] + "..."
    return key.encode("unicode_escape").decode("ascii") if has_control_character(key) else key
