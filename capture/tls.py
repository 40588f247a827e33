"""How a site agent trusts the hub over HTTPS: a CA file, or the hub certificate's SHA-256 pinned.

* :func:`hub_ssl` → what the agent's ``httpx`` client gets as ``verify``: the system's trust store
  (``True``) by default, an ``ssl.SSLContext`` verifying against ``ca_file`` (chain *and* host
  name), or a context that accepts exactly one certificate, the one whose DER SHA-256 is
  ``cert_sha256`` (a self-signed hub: no chain and no host name to check, the fingerprint is the
  whole identity).  Both given: both must hold.
* A different certificate ends the TLS handshake with :class:`HubCertMismatch` (an
  ``ssl.SSLCertVerificationError``) whose message names the expected and the presented
  fingerprints, before a byte of the request — the agent token — is sent.

The fingerprint is checked in ``SSLObject.do_handshake`` / ``SSLSocket.do_handshake`` of the
context's own classes, so it holds for every connection made with the context (asyncio's TLS
and blocking sockets alike), whatever library opens them.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class HubCertMismatch(ssl.SSLCertVerificationError):
    """The hub presented a certificate other than the pinned one."""


def normalize_sha256(value: str) -> str:
    """``AB:CD:…`` / ``abcd…`` / ``sha256:abcd…`` → 64 lower-case hex digits; ValueError naming
    what is wrong otherwise."""
    v = value.strip().lower()
    if v.startswith("sha256:"):
        v = v[len("sha256:"):]
    v = v.replace(":", "").replace(" ", "")
    if not _HEX64.fullmatch(v):
        raise ValueError(
            f"hub certificate fingerprint {value!r} is not a SHA-256 (64 hex digits, colons allowed)"
        )
    return v


def pretty_sha256(hex64: str) -> str:
    """``AB:CD:…`` as ``openssl x509 -fingerprint -sha256`` prints it."""
    h = normalize_sha256(hex64).upper()
    return ":".join(h[i : i + 2] for i in range(0, 64, 2))


def der_sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem_file_sha256(cert_file: str | Path) -> str:
    """SHA-256 (hex) of the first certificate of a PEM file (what agents pin; stdlib only)."""
    text = Path(cert_file).read_text(encoding="ascii", errors="replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    i = text.find(begin)
    j = text.find(end, i)
    if i < 0 or j < 0:
        raise ValueError(f"{str(cert_file)!r} holds no PEM certificate")
    return der_sha256(ssl.PEM_cert_to_DER_cert(text[i : j + len(end)]))


def _check(expected: str, der: bytes | None) -> None:
    got = der_sha256(der) if der else ""
    if got != expected:
        raise HubCertMismatch(
            "the hub's certificate is not the pinned one: expected sha256 "
            f"{pretty_sha256(expected)}, got {pretty_sha256(got) if got else 'no certificate'} — "
            "refusing to talk to this server (a different hub, or somebody in between; if the hub "
            "got a new certificate, update sites[].hub_cert_sha256 / --hub-cert-sha256)"
        )


def pinned_context(cert_sha256: str, ca_file: str | Path | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` accepting only the certificate whose DER SHA-256 is ``cert_sha256``
    (and, with ``ca_file``, only if it also verifies against it, host name included)."""
    expected = normalize_sha256(cert_sha256)

    class PinnedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantReadError until the handshake is complete
            _check(expected, self.getpeercert(binary_form=True))

    class PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            _check(expected, self.getpeercert(binary_form=True))

    ctx = _ca_context(ca_file) if ca_file else ssl.create_default_context()
    if ca_file is None:
        # The pin is the identity: a self-signed hub has no chain, and agents reach it by IP.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.sslobject_class = PinnedObject
    ctx.sslsocket_class = PinnedSocket
    return ctx


def hub_ssl(ca_file: str | Path | None = None, cert_sha256: str | None = None) -> ssl.SSLContext | bool:
    """The ``verify`` argument of the agent's HTTP client (see the module docstring)."""
    if cert_sha256:
        return pinned_context(cert_sha256, ca_file)
    if ca_file:
        return _ca_context(ca_file)
    return True


def _ca_context(ca_file: str | Path) -> ssl.SSLContext:
    path = Path(ca_file)
    if not path.is_file():
        raise ValueError(f"hub CA file {str(path)!r} does not exist")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as e:
        raise ValueError(f"hub CA file {str(path)!r} holds no usable certificate: {e}") from None
