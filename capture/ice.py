"""ICE setup shared by the agent and the hub.

aioice gathers host candidates from every interface *except* loopback and offers no option to
change that, and aiortc adds Google's public STUN server when ``iceServers`` is left out.  Both are
wrong for evalwatch (offline sites, tests on 127.0.0.1), so:

* :func:`configure_ice` replaces ``aioice.ice.get_host_addresses`` with one that returns the
  configured interface addresses (``hub.ice_interfaces``); ``"*"`` in the list means "every
  non-loopback address aioice would normally use" and may be combined with explicit addresses;
* :func:`rtc_configuration` builds an ``RTCConfiguration`` holding only the configured STUN/TURN
  servers (never the public default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from urllib.parse import unquote, urlsplit

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)

_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_configured: list[str] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _configured is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    out: list[str] = []
    for addr in _configured:
        if addr == "*":
            out.extend(a for a in _original_get_host_addresses(use_ipv4, use_ipv6) if a not in out)
        elif (":" in addr and use_ipv6) or (":" not in addr and use_ipv4):
            if addr not in out:
                out.append(addr)
    return out


def configure_ice(interfaces: Sequence[str]) -> None:
    """Make aioice gather host candidates on exactly ``interfaces`` (process-wide)."""
    global _configured
    _configured = list(interfaces) if interfaces else None
    aioice.ice.get_host_addresses = _get_host_addresses
    log.debug("ice host addresses: %s", _configured or "aioice default")


def rtc_configuration(stun_urls: Sequence[str] = (), turn_urls: Sequence[str] = ()) -> RTCConfiguration:
    """RTCConfiguration with only the configured servers.

    TURN URLs may carry credentials as ``turn://user:pass@host:port``; they are split out into
    ``RTCIceServer.username``/``credential`` (and never logged).
    """
    servers: list[RTCIceServer] = []
    for url in stun_urls:
        servers.append(RTCIceServer(urls=url if url.startswith("stun:") else f"stun:{_hostport(url)}"))
    for url in turn_urls:
        parts = urlsplit(url if "://" in url else "turn://" + url.removeprefix("turn:"))
        host = parts.hostname or ""
        port = parts.port or 3478
        servers.append(
            RTCIceServer(
                urls=f"turn:{host}:{port}",
                username=unquote(parts.username) if parts.username else None,
                credential=unquote(parts.password) if parts.password else None,
            )
        )
    return RTCConfiguration(iceServers=servers)


def _hostport(url: str) -> str:
    parts = urlsplit(url if "://" in url else "stun://" + url)
    return f"{parts.hostname}:{parts.port or 3478}"
