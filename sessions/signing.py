"""The hub's Ed25519 signing key (session seals, evidence manifests) and offline verification.

Contract:

* :meth:`HubKey.load_or_create` reads ``<data_dir>/keys/hub_ed25519.pem`` (PKCS#8 PEM, no
  passphrase) or creates it on first use — directory mode 0700, file mode 0600, created with
  ``O_EXCL`` so two processes never write two different keys.  A key file readable by group or
  others is tightened to 0600 (with a warning naming the file, never its content).
* The private key never leaves this object: it is not logged, not in ``repr``, not exported.
* :meth:`HubKey.public_pem` is the exportable public key (SubjectPublicKeyInfo PEM);
  :func:`key_id` is the sha256 hex of the raw 32-byte public key (its fingerprint).
* :meth:`HubKey.sign` returns the base64 signature of the given bytes; :func:`verify_signature`
  checks one against a PEM public key and returns ``False`` (never raises) on any mismatch or
  malformed input.
* Trusted keys live outside the database: the hub's current key plus the public keys of its
  previous (rotated) keys, one or more PEM files in ``<data_dir>/keys/trusted/``
  (:func:`hub_trusted_pems`).  Seals and evidence are only ever checked against such a key, never
  against a public key read from the database or from the zip being checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger("evalwatch.sessions.signing")

KEY_FILE = "hub_ed25519.pem"
TRUSTED_DIR = "trusted"
_PEM_BLOCK = re.compile(
    rb"-----BEGIN PUBLIC KEY-----[^-]+-----END PUBLIC KEY-----"
)


class HubKeyError(Exception):
    """The key file exists but cannot be used (unreadable, not an Ed25519 private key)."""


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_pem: str | bytes) -> str:
    """sha256 hex of the raw public key in ``public_pem``; ``ValueError`` if it is not Ed25519."""
    return hashlib.sha256(_raw_public(load_public_key(public_pem))).hexdigest()


def load_public_key(public_pem: str | bytes) -> Ed25519PublicKey:
    """Parse an Ed25519 public key PEM; ``ValueError`` with a clear message otherwise."""
    data = public_pem.encode("ascii", "replace") if isinstance(public_pem, str) else public_pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("public key is not an Ed25519 key")
    return key


def verify_signature(public_pem: str | bytes, data: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``data`` by ``public_pem``."""
    try:
        key = load_public_key(public_pem)
        sig = base64.b64decode(signature_b64.encode("ascii"), validate=True)
        key.verify(sig, data)
    except (ValueError, TypeError, InvalidSignature, binascii.Error, UnicodeEncodeError):
        return False
    return True


class HubKey:
    """The hub's signing key (see module docstring)."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private
        self.path = path

    def __repr__(self) -> str:
        return f"HubKey(key_id={self.key_id[:16]}…, path={self.path})"

    @classmethod
    def generate(cls) -> HubKey:
        """A fresh in-memory key (tests)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, data_dir: str | Path) -> HubKey:
        """The key under ``<data_dir>/keys/``, created (0600) on first use."""
        keys = Path(data_dir) / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = keys / KEY_FILE
        if not path.exists():
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: use theirs
            else:
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                log.info("created hub signing key path=%s", path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("hub signing key %s had mode %o; tightening to 0600", path, mode)
            os.chmod(path, 0o600)
        try:
            private_any = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise HubKeyError(f"hub signing key {path} is unusable: {type(e).__name__}") from None
        if not isinstance(private_any, Ed25519PrivateKey):
            raise HubKeyError(f"hub signing key {path} is not an Ed25519 private key")
        return cls(private_any, path)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def public_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM (safe to publish)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(_raw_public(self.public_key)).hexdigest()

    def sign(self, data: bytes) -> str:
        """Base64 Ed25519 signature of ``data``."""
        return base64.b64encode(self._private.sign(data)).decode("ascii")


def read_public_pems(path: str | Path) -> list[str]:
    """Every Ed25519 public key PEM in ``path``: a file holding one or more PEM blocks, or a
    directory of ``*.pem`` files.  ``ValueError`` naming the file when one holds no usable key."""
    p = Path(path)
    files = sorted(p.glob("*.pem")) if p.is_dir() else [p]
    out: list[str] = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read {f}: {e.strerror or e}") from None
        blocks = _PEM_BLOCK.findall(data)
        if not blocks:
            raise ValueError(f"{f}: no PEM public key in it")
        for b in blocks:
            try:
                load_public_key(b)
            except ValueError as e:
                raise ValueError(f"{f}: {e}") from None
            out.append(b.decode("ascii") + "\n")
    return out


def hub_trusted_pems(data_dir: str | Path, key: HubKey | None = None) -> list[str]:
    """The public keys the hub trusts for seals and exports: ``key`` (the hub's current key, if
    given), the key file under ``<data_dir>/keys/`` when it exists (never created here) and the
    rotated keys in ``<data_dir>/keys/trusted/*.pem``.  Read from files the hub owns, never from the DB."""
    keys = Path(data_dir) / "keys"
    out: list[str] = [key.public_pem()] if key is not None else []
    if (keys / KEY_FILE).exists():
        own = HubKey.load_or_create(data_dir).public_pem()
        if own not in out:
            out.append(own)
    trusted = keys / TRUSTED_DIR
    if trusted.is_dir():
        out.extend(read_public_pems(trusted))
    return out


def pick_trusted(trusted: list[str], kid: str | None) -> str | None:
    """The PEM among ``trusted`` whose fingerprint is ``kid`` (None when none is)."""
    for pem in trusted:
        try:
            if key_id(pem) == kid:
                return pem
        except ValueError:
            continue
    return None
