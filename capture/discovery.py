"""``evalwatch agent discover``: find the ONVIF cameras on the room's network and their RTSP URLs.

1. **WS-Discovery** (2005/04, as ONVIF specifies): a ``Probe`` for ``dn:NetworkVideoTransmitter``
   over UDP to the multicast group ``239.255.255.250:3702`` (and/or unicast to ``--address
   HOST[:PORT]``, for networks without multicast); every ``ProbeMatch`` that relates to our
   message gives a device's endpoint (``urn:uuid:…``), scopes and service addresses (``XAddrs``).
2. **ONVIF SOAP** (1.2) on each device service: ``GetSystemDateAndTime`` (unauthenticated: the
   camera's clock, so that the token below is dated in the camera's time), ``GetDeviceInformation``,
   ``GetCapabilities`` (the media service address), then on the media service ``GetProfiles`` and
   ``GetStreamUri`` (RTP-Unicast over RTSP) per profile.  Requests carry a WS-Security
   ``UsernameToken`` with ``PasswordDigest`` = Base64(SHA-1(nonce + created + password)) from
   ``--user`` / ``--password`` (or ``$EVALWATCH_CAMERA_PASSWORD``); a camera that answers HTTP 401
   is asked again with HTTP digest authentication.

Hand-written on httpx and the standard library (no zeep/WSDL: parsing ONVIF's WSDLs takes seconds
and pulls lxml; WSDiscovery's package says itself it does not verify what it receives).  XML from
the network is parsed by expat without DTDs (a document with a ``<!DOCTYPE`` is refused), sizes
are capped, and the password is never printed, logged or written: URLs are shown with any
``user:pass@`` masked and ``--write`` stores the URL without credentials (the admin adds them
where the agent's config keeps secrets).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import socket
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from capture.source import mask_url

MULTICAST = ("239.255.255.250", 3702)
MAX_DATAGRAM = 65535
MAX_SOAP_BYTES = 2 * 1024 * 1024

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
#: The URI naming the digest type (not a password).
PASSWORD_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"  # noqa: S105
)
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)


class DiscoveryError(Exception):
    """A device or the network answered unusably; the message says which and why."""


def _parse(data: bytes, what: str) -> ET.Element:
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise DiscoveryError(f"{what}: XML with a DTD refused")
    try:
        return ET.fromstring(data)  # noqa: S314 - no DTD (above), expat >= 2.4 caps amplification
    except ET.ParseError as e:
        raise DiscoveryError(f"{what}: not XML ({e})") from None


def _text(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path, NS)
    return found.text.strip() if found is not None and found.text else None


# -- WS-Discovery -----------------------------------------------------------------------------------


def probe_message(message_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:d="{NS["d"]}" xmlns:dn="{NS["dn"]}">'
        "<s:Header>"
        f"<a:Action>{NS['d']}/Probe</a:Action>"
        f"<a:MessageID>{message_id}</a:MessageID>"
        "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>"
        "</s:Header>"
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


@dataclass
class ProbeMatch:
    endpoint: str
    xaddrs: list[str]
    scopes: list[str]
    types: list[str]
    source: str  # "ip:port" the answer came from


def parse_probe_matches(data: bytes, message_id: str, source: str) -> list[ProbeMatch]:
    """The ProbeMatches of one datagram that answer ``message_id`` (others are ignored)."""
    root = _parse(data, f"WS-Discovery answer from {source}")
    if _text(root, "s:Header/a:RelatesTo") != message_id:
        return []
    out = []
    for m in root.iterfind("s:Body/d:ProbeMatches/d:ProbeMatch", NS):
        xaddrs = [x for x in (_text(m, "d:XAddrs") or "").split() if x.startswith(("http://", "https://"))]
        if not xaddrs:
            continue
        out.append(
            ProbeMatch(
                endpoint=_text(m, "a:EndpointReference/a:Address") or xaddrs[0],
                xaddrs=xaddrs,
                scopes=(_text(m, "d:Scopes") or "").split(),
                types=(_text(m, "d:Types") or "").split(),
                source=source,
            )
        )
    return out


def ws_discover(
    *,
    multicast: bool = True,
    addresses: list[tuple[str, int]] | None = None,
    timeout: float = 3.0,
    interface: str | None = None,
    group: tuple[str, int] = MULTICAST,
) -> list[ProbeMatch]:
    """Send one Probe (multicast and/or to each address), collect matches for ``timeout`` s.

    ``interface``: the local IPv4 address whose network the multicast probe goes out on (the
    OS's choice by default — on a PC with several networks, name the cameras' one)."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    msg = probe_message(message_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.bind(("", 0))
        targets = list(addresses or [])
        if multicast:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            if interface:
                try:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
                except OSError as e:
                    raise DiscoveryError(f"--interface {interface}: {e.strerror or e}") from None
            targets.append(group)
        for target in targets:
            try:
                sock.sendto(msg, target)
            except OSError as e:
                raise DiscoveryError(
                    f"cannot send the probe to {target[0]}:{target[1]}: {e.strerror or e}"
                ) from None
        found: dict[str, ProbeMatch] = {}
        answered: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (host, port) = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                break
            except ConnectionError:  # Windows: ICMP port unreachable from a unicast target
                continue
            try:
                matches = parse_probe_matches(data, message_id, f"{host}:{port}")
            except DiscoveryError:
                continue  # somebody else's garbage on the port: not ours
            for m in matches:
                found.setdefault(m.endpoint, m)
            if matches:
                answered.add((host, port))
            if not multicast and len(answered) >= len(targets):
                break  # every unicast target answered: no need to wait out the timeout
        return list(found.values())
    finally:
        sock.close()


# -- ONVIF SOAP ------------------------------------------------------------------------------------


def username_token(user: str, password: str, created: datetime, nonce: bytes) -> str:
    """The WS-Security header (UsernameToken, PasswordDigest)."""
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z"
    digest = base64.b64encode(hashlib.sha1(nonce + stamp.encode() + password.encode()).digest()).decode()  # noqa: S324 - the protocol's digest
    return (
        f'<wsse:Security s:mustUnderstand="1" xmlns:wsse="{NS["wsse"]}" xmlns:wsu="{NS["wsu"]}">'
        f"<wsse:UsernameToken><wsse:Username>{_xml_escape(user)}</wsse:Username>"
        f'<wsse:Password Type="{PASSWORD_DIGEST}">{digest}</wsse:Password>'
        f'<wsse:Nonce EncodingType="{BASE64_BINARY}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
        f"<wsu:Created>{stamp}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@dataclass
class Profile:
    token: str
    name: str | None
    encoding: str | None
    width: int | None
    height: int | None
    rtsp: str | None = None
    error: str | None = None


@dataclass
class Camera:
    endpoint: str
    device_url: str
    host: str
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    profiles: list[Profile] = field(default_factory=list)
    error: str | None = None


class OnvifClient:
    """The few ONVIF calls discovery needs, on one device."""

    def __init__(self, device_url: str, user: str | None, password: str | None, *, timeout: float = 5.0):
        self.device_url = device_url
        self.user = user
        self.password = password or ""
        self.clock_offset = timedelta(0)
        self.http = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def call(self, url: str, body: str, *, auth: bool = True) -> ET.Element:
        header = ""
        if auth and self.user:
            header = username_token(
                self.user, self.password, datetime.now(UTC) + self.clock_offset, secrets.token_bytes(16)
            )
        envelope = (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{NS["s"]}" '
            f'xmlns:tds="{NS["tds"]}" xmlns:trt="{NS["trt"]}" xmlns:tt="{NS["tt"]}">'
            f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
        ).encode()
        headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
        op = body.split(">", 1)[0].lstrip("<").split()[0].rstrip("/")
        try:
            r = self.http.post(url, content=envelope, headers=headers)
            if r.status_code == 401 and self.user:
                r = self.http.post(
                    url, content=envelope, headers=headers, auth=httpx.DigestAuth(self.user, self.password)
                )
        except httpx.HTTPError as e:
            raise DiscoveryError(f"{op} at {mask_url(url)}: {type(e).__name__}: {e}") from None
        data = r.content[:MAX_SOAP_BYTES]
        if r.status_code == 401 or (b"NotAuthorized" in data[:8192] and r.status_code >= 400):
            raise DiscoveryError(
                f"{op} at {mask_url(url)}: the camera refused the credentials"
                + ("" if self.user else " (none given: --user/--password)")
            )
        root = _parse(data, f"{op} at {mask_url(url)}")
        fault = root.find("s:Body/s:Fault", NS)
        if fault is not None or r.status_code >= 400:
            reason = _text(fault, "s:Reason/s:Text") if fault is not None else None
            raise DiscoveryError(f"{op} at {mask_url(url)}: HTTP {r.status_code}: {reason or 'SOAP fault'}")
        body_el = root.find("s:Body", NS)
        if body_el is None or len(body_el) == 0:
            raise DiscoveryError(f"{op} at {mask_url(url)}: empty SOAP body")
        return body_el[0]

    def sync_clock(self) -> None:
        """Date the tokens in the camera's time (cameras refuse tokens off by minutes)."""
        try:
            resp = self.call(self.device_url, "<tds:GetSystemDateAndTime/>", auth=False)
        except DiscoveryError:
            return
        utc = resp.find("tds:SystemDateAndTime/tt:UTCDateTime", NS)
        try:
            parts = [
                int(_text(utc, p) or "")
                for p in (
                    "tt:Date/tt:Year",
                    "tt:Date/tt:Month",
                    "tt:Date/tt:Day",
                    "tt:Time/tt:Hour",
                    "tt:Time/tt:Minute",
                    "tt:Time/tt:Second",
                )
            ]
            y, mo, d, h, mi, sec = parts
            self.clock_offset = datetime(y, mo, d, h, mi, sec, tzinfo=UTC) - datetime.now(UTC)
        except ValueError:
            return

    def describe(self, endpoint: str) -> Camera:
        cam = Camera(
            endpoint=endpoint, device_url=self.device_url, host=urlsplit(self.device_url).hostname or ""
        )
        self.sync_clock()
        try:
            info = self.call(self.device_url, "<tds:GetDeviceInformation/>")
            cam.manufacturer = _text(info, "tds:Manufacturer")
            cam.model = _text(info, "tds:Model")
            cam.serial = _text(info, "tds:SerialNumber")
        except DiscoveryError as e:
            if "credentials" in str(e):
                cam.error = str(e)
                return cam
        media_url = self.device_url
        try:
            caps = self.call(
                self.device_url,
                "<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>",
            )
            media_url = _text(caps, "tds:Capabilities/tt:Media/tt:XAddr") or media_url
        except DiscoveryError:
            pass  # many cameras serve media on the device URL too
        try:
            profiles = self.call(media_url, "<trt:GetProfiles/>")
        except DiscoveryError as e:
            cam.error = str(e)
            return cam
        for p in profiles.iterfind("trt:Profiles", NS):
            enc = p.find("tt:VideoEncoderConfiguration", NS)
            w, h = _text(enc, "tt:Resolution/tt:Width"), _text(enc, "tt:Resolution/tt:Height")
            prof = Profile(
                token=p.get("token") or "",
                name=_text(p, "tt:Name"),
                encoding=_text(enc, "tt:Encoding"),
                width=int(w) if w and w.isdigit() else None,
                height=int(h) if h and h.isdigit() else None,
            )
            try:
                uri = self.call(
                    media_url,
                    (
                        "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream>"
                        "<tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>"
                        f"<trt:ProfileToken>{_xml_escape(prof.token)}</trt:ProfileToken></trt:GetStreamUri>"
                    ),
                )
                prof.rtsp = _text(uri, "trt:MediaUri/tt:Uri")
                if not prof.rtsp:
                    prof.error = "GetStreamUri: no Uri in the answer"
            except DiscoveryError as e:
                prof.error = str(e)
            cam.profiles.append(prof)
        if not cam.profiles:
            cam.error = "GetProfiles: the camera has no media profile"
        return cam


def discover(
    *,
    multicast: bool = True,
    addresses: list[tuple[str, int]] | None = None,
    timeout: float = 3.0,
    user: str | None = None,
    password: str | None = None,
    interface: str | None = None,
) -> list[Camera]:
    cams = []
    for m in ws_discover(multicast=multicast, addresses=addresses, timeout=timeout, interface=interface):
        client = OnvifClient(m.xaddrs[0], user, password, timeout=max(2.0, timeout))
        try:
            cams.append(client.describe(m.endpoint))
        finally:
            client.close()
    return cams


# -- the camera list ----------------------------------------------------------------------------------


def strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def camera_entries(cams: list[Camera], user: str | None) -> list[dict[str, Any]]:
    """One camera-list entry per camera: its first profile with a stream as ``source`` (cameras
    list their main stream first), the others as ``substreams``; ``room: null`` for the admin."""
    out = []
    for cam in cams:
        streams = [p for p in cam.profiles if p.rtsp]
        if not streams:
            continue
        main = streams[0]
        slug = "cam-" + "".join(c if c.isalnum() else "-" for c in cam.host).strip("-")
        out.append(
            {
                "id": slug,
                "room": None,
                "source": strip_credentials(main.rtsp or ""),
                "width": main.width,
                "height": main.height,
                "onvif": {
                    "endpoint": cam.endpoint,
                    "device": strip_credentials(cam.device_url),
                    "manufacturer": cam.manufacturer,
                    "model": cam.model,
                    "serial": cam.serial,
                    "profile": main.token,
                    "username": user,
                },
                "substreams": [
                    {
                        "profile": p.token,
                        "source": strip_credentials(p.rtsp or ""),
                        "width": p.width,
                        "height": p.height,
                    }
                    for p in streams[1:]
                ],
            }
        )
    return out


def append_camera_list(path: Path, entries: list[dict[str, Any]]) -> int:
    """Append ``entries`` to the YAML camera list at ``path`` (``cameras: [...]``), skipping
    cameras already listed (same ONVIF endpoint); returns how many were added."""
    import yaml

    doc: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DiscoveryError(f"--write {path}: not YAML ({e})") from None
        if loaded is not None and not (
            isinstance(loaded, dict) and isinstance(loaded.get("cameras", []), list)
        ):
            raise DiscoveryError(
                f"--write {path}: not a camera list (expected a mapping with 'cameras: [...]')"
            )
        doc = loaded or {}
    cameras: list[dict[str, Any]] = doc.setdefault("cameras", [])
    known = {((c.get("onvif") or {}).get("endpoint")) for c in cameras if isinstance(c, dict)}
    ids = {c.get("id") for c in cameras if isinstance(c, dict)}
    added = 0
    for entry in entries:
        if entry["onvif"]["endpoint"] in known:
            continue
        base, n = entry["id"], 2
        while entry["id"] in ids:
            entry["id"], n = f"{base}-{n}", n + 1
        cameras.append(entry)
        known.add(entry["onvif"]["endpoint"])
        ids.add(entry["id"])
        added += 1
    text = (
        "# Cameras found by `evalwatch agent discover`: give each a room (and credentials in the\n"
        "# agent's config), then copy it into the site's rooms.\n"
    ) + yaml.safe_dump(doc, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return added


# -- command line -------------------------------------------------------------------------------------


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST or HOST:PORT")
    try:
        p = int(port) if port else MULTICAST[1]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be a number") from None
    if not 0 < p < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: port out of range")
    try:
        socket.getaddrinfo(host, p, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror:
        raise argparse.ArgumentTypeError(f"{value!r}: unknown host") from None
    return host, p


def _ipv4(value: str) -> str:
    try:
        socket.inet_aton(value)
    except OSError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a local IPv4 address") from None
    return value


def _positive(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < v <= 60:
        raise argparse.ArgumentTypeError(f"{value!r}: between 0 and 60 seconds")
    return v


def _table(cams: list[Camera]) -> str:
    rows = [("HOST", "MODEL", "PROFILE", "ENCODING", "SIZE", "RTSP / ERROR")]
    for c in cams:
        model = " ".join(x for x in (c.manufacturer, c.model) if x) or "-"
        if c.error or not c.profiles:
            rows.append((c.host, model, "-", "-", "-", f"ERROR {c.error}"))
        for p in c.profiles:
            size = f"{p.width}x{p.height}" if p.width and p.height else "-"
            rows.append(
                (
                    c.host,
                    model,
                    p.token,
                    p.encoding or "-",
                    size,
                    mask_url(p.rtsp) if p.rtsp else f"ERROR {p.error}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(v.ljust(widths[i]) if i < 5 else v for i, v in enumerate(r)) for r in rows)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="evalwatch agent discover",
        description="Find ONVIF cameras (WS-Discovery) and their RTSP URLs (GetProfiles / GetStreamUri).",
    )
    ap.add_argument(
        "--address",
        action="append",
        type=_address,
        default=[],
        metavar="HOST[:PORT]",
        help="also probe this address by unicast (repeatable; port default 3702)",
    )
    ap.add_argument("--no-multicast", action="store_true", help="only the --address probes")
    ap.add_argument(
        "--interface",
        type=_ipv4,
        metavar="IP",
        help="send the multicast probe from this local address's network",
    )
    ap.add_argument("--timeout", type=_positive, default=3.0, help="seconds to wait for answers (default 3)")
    ap.add_argument("--user", help="camera user for the ONVIF calls")
    ap.add_argument("--password", help="camera password (better: $EVALWATCH_CAMERA_PASSWORD; never shown)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--write", metavar="FILE", help="append the cameras found to this YAML camera list")

    def refuse(message: str) -> Any:
        print(f"evalwatch agent discover: {message}", file=sys.stderr)
        raise SystemExit(2)

    ap.error = refuse  # type: ignore[method-assign]
    args = ap.parse_args(argv)
    if args.no_multicast and not args.address:
        return refuse("--no-multicast needs at least one --address")
    password = args.password or os.environ.get("EVALWATCH_CAMERA_PASSWORD")
    if password and not args.user:
        return refuse("a password without --user")
    try:
        cams = discover(
            multicast=not args.no_multicast,
            addresses=args.address,
            timeout=args.timeout,
            user=args.user,
            password=password,
            interface=args.interface,
        )
    except DiscoveryError as e:
        print(f"evalwatch agent discover: {e}", file=sys.stderr)
        return 1
    if args.json:
        docs = [asdict(c) for c in cams]
        for d in docs:
            for p in d["profiles"]:
                p["rtsp"] = mask_url(p["rtsp"]) if p["rtsp"] else None
        print(json.dumps(docs, indent=2))
    elif cams:
        print(_table(cams))
    if not cams:
        where = ", ".join(f"{h}:{p}" for h, p in args.address) or "the multicast group"
        print(
            f"evalwatch agent discover: no ONVIF device answered ({where}, {args.timeout:g} s)",
            file=sys.stderr,
        )
        return 1
    if args.write:
        try:
            added = append_camera_list(Path(args.write), camera_entries(cams, args.user))
        except (DiscoveryError, OSError) as e:
            print(f"evalwatch agent discover: {e}", file=sys.stderr)
            return 2
        print(f"{added} camera(s) added to {args.write}", file=sys.stderr)
    return 1 if any(c.error or any(p.error for p in c.profiles) for c in cams) else 0
