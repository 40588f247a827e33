"""``evalwatch tls`` — the hub's HTTPS certificate for a demo or a site without a PKI.

``evalwatch tls self-signed --out DIR [--host NAME_OR_IP ...] [--days N]`` writes ``DIR/hub.crt``
and ``DIR/hub.key`` (mode 0600) and prints the certificate's SHA-256 fingerprint, which agents pin
(``sites[].hub_cert_sha256`` or ``evalwatch agent --hub-cert-sha256``).  ``evalwatch tls
fingerprint FILE`` prints the fingerprint of an existing certificate (PEM).  ``evalwatch hub
--self-signed`` does the same as ``self-signed`` into ``<storage.data_dir>/tls/`` (kept across
restarts: a new certificate would break every agent's pin) and serves HTTPS with it.

Nothing here is secret but ``hub.key``: it is written 0600 in a 0700 directory and never logged.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from capture.tls import der_sha256, pretty_sha256

CERT_NAME = "hub.crt"
KEY_NAME = "hub.key"


def default_hosts(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Names the certificate is for: ``extra`` (e.g. ``hub.listen_host``), this machine's name,
    ``localhost`` and the loopback addresses."""
    out: list[str] = []
    for h in [*extra, socket.gethostname(), "localhost", "127.0.0.1", "::1"]:
        if h and h not in out and h not in ("0.0.0.0", "::"):
            out.append(h)
    return out


def write_self_signed(out_dir: str | Path, hosts: list[str], *, days: int = 825) -> tuple[Path, Path]:
    """A new ECDSA P-256 key and a self-signed certificate for ``hosts`` (DNS names and IP
    addresses, all in subjectAltName) in ``out_dir``: ``(cert_path, key_path)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("a certificate needs at least one host name or address")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evalwatch hub (self-signed)"),
    ])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out / CERT_NAME, out / KEY_NAME
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = key_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    os.replace(tmp, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def cert_sha256(cert_file: str | Path) -> str:
    """SHA-256 (hex) of the DER of the first certificate in the PEM file ``cert_file``;
    ValueError naming the file when it holds none."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    path = Path(cert_file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read certificate {str(path)!r}: {e.strerror or e}") from None
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{str(path)!r} is not a PEM certificate") from None
    return der_sha256(cert.public_bytes(serialization.Encoding.DER))


def ensure_self_signed(out_dir: str | Path, hosts: list[str]) -> tuple[Path, Path, bool]:
    """The certificate in ``out_dir`` if both files exist, else a new one: ``(cert, key, created)``."""
    out = Path(out_dir)
    cert, key = out / CERT_NAME, out / KEY_NAME
    if cert.is_file() and key.is_file():
        cert_sha256(cert)  # readable and a certificate, or a clear error
        return cert, key, False
    cert, key = write_self_signed(out, hosts)
    return cert, key, True


def check_pair(cert_file: str | Path, key_file: str | Path) -> None:
    """ValueError naming the problem when the hub could not serve HTTPS with these files."""
    import ssl

    for what, p in (("hub.tls_cert", cert_file), ("hub.tls_key", key_file)):
        if not Path(p).is_file():
            raise ValueError(f"{what}: {str(p)!r} does not exist")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (ssl.SSLError, OSError) as e:
        raise ValueError(
            f"hub.tls_cert {str(cert_file)!r} / hub.tls_key {str(key_file)!r} are not a usable "
            f"certificate and matching private key: {getattr(e, 'reason', None) or e}"
        ) from None


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="evalwatch tls", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ss = sub.add_parser("self-signed", help="write a self-signed certificate + key for the hub")
    ss.add_argument("--out", required=True, help="directory for hub.crt and hub.key (0600)")
    ss.add_argument("--host", action="append", default=[],
                    help="DNS name or IP address agents and browsers use for the hub (repeatable)")
    ss.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    ss.add_argument("--force", action="store_true", help="replace an existing certificate in --out")
    fp = sub.add_parser("fingerprint", help="print the SHA-256 fingerprint of a PEM certificate")
    fp.add_argument("cert", help="PEM certificate file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fingerprint":
            print(pretty_sha256(cert_sha256(args.cert)))
            return 0
        if args.days < 1:
            raise ValueError(f"--days must be at least 1, got {args.days}")
        out = Path(args.out)
        if (out / CERT_NAME).exists() and not args.force:
            raise ValueError(
                f"{out / CERT_NAME} exists (agents may pin it); --force replaces it"
            )
        cert, key = write_self_signed(out, default_hosts(args.host), days=args.days)
    except ValueError as e:
        print(f"evalwatch tls: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"evalwatch tls: cannot write to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"certificate: {cert}\nkey:         {key} (mode 0600, keep it private)")
    print(f"sha256:      {pretty_sha256(cert_sha256(cert))}")
    print("hub config:  hub.tls_cert / hub.tls_key; agents: sites[].hub_cert_sha256 or --hub-cert-sha256")
    return 0
