"""A stand-in ONVIF camera on 127.0.0.1 for ``evalwatch agent discover`` tests.

* WS-Discovery: a UDP socket answering a ``Probe`` for ``NetworkVideoTransmitter`` with a
  ``ProbeMatch`` (``RelatesTo`` = the probe's ``MessageID``, ``XAddrs`` = the device service);
  probes for other types get no answer, as on a real network.
* ONVIF over HTTP: the device service (``GetSystemDateAndTime`` without authentication,
  ``GetDeviceInformation``, ``GetCapabilities``) and the media service (``GetProfiles``,
  ``GetStreamUri``), all but the first checking the WS-Security UsernameToken digest against
  ``user``/``password`` and that ``Created`` is within 5 s of the camera's clock (which runs
  ``clock_offset`` seconds off this machine's, as badly set cameras do).

Each request is recorded in :attr:`OnvifCamera.requests` (operation, authenticated or not).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

S = "http://www.w3.org/2003/05/soap-envelope"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
D = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TT = "http://www.onvif.org/ver10/schema"
GROUP = "239.255.255.250"


def _envelope(body: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{S}" xmlns:a="{A}" xmlns:d="{D}" '
        f'xmlns:tds="{TDS}" xmlns:trt="{TRT}" xmlns:tt="{TT}" '
        f'xmlns:ter="http://www.onvif.org/ver10/error" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


NOT_AUTHORIZED = _envelope(
    "<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>ter:NotAuthorized</s:Value>"
    '</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">Sender not authorized</s:Text></s:Reason></s:Fault>'
)


class OnvifCamera:
    """Start with :meth:`start`, stop with :meth:`close` (or use as a context manager)."""

    def __init__(
        self,
        *,
        user: str = "admin",
        password: str = "cam-secret-123",  # noqa: S107 - a stand-in camera's test password
        clock_offset: float = 0.0,
        profiles: list[tuple[str, str, int, int, str]] | None = None,
        endpoint: str = "urn:uuid:5f1c7a52-0000-4000-8000-00000000c0de",
    ):
        self.user = user
        self.password = password
        self.clock_offset = timedelta(seconds=clock_offset)
        #: (token, name, width, height, rtsp path)
        self.profiles = profiles or [
            ("Profile_1", "mainStream", 1920, 1080, "/Streaming/Channels/101"),
            ("Profile_2", "subStream", 640, 480, "/Streaming/Channels/102"),
        ]
        self.endpoint = endpoint
        self.requests: list[tuple[str, bool]] = []
        self.probes = 0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.udp_port = self.udp.getsockname()[1]
        #: Also a member of the WS-Discovery group on the loopback interface, on its own port
        #: (``ws_discover(interface="127.0.0.1", group=(GROUP, camera.group_port))``).
        self.group_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.group_sock.bind(("", 0))
        self.group_sock.settimeout(0.2)
        self.group_sock.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")),
        )
        self.group_port = self.group_sock.getsockname()[1]
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                status, body = camera._soap(self.path, self.rfile.read(n))
                self.send_response(status)
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self.http.server_address[1]
        self.device_url = f"http://127.0.0.1:{self.http_port}/onvif/device_service"
        self.media_url = f"http://127.0.0.1:{self.http_port}/onvif/media_service"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --

    def start(self) -> OnvifCamera:
        loops = [
            lambda: self._udp_loop(self.udp),
            lambda: self._udp_loop(self.group_sock),
            self.http.serve_forever,
        ]
        for target in loops:
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        for t in self._threads:
            t.join(5)
        self.udp.close()
        self.group_sock.close()

    def __enter__(self) -> OnvifCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- WS-Discovery --

    def _udp_loop(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            try:
                root = ET.fromstring(data)  # noqa: S314
            except ET.ParseError:
                continue
            msg_id = root.findtext(f"{{{S}}}Header/{{{A}}}MessageID")
            types = root.findtext(f"{{{S}}}Body/{{{D}}}Probe/{{{D}}}Types") or ""
            if not msg_id or "NetworkVideoTransmitter" not in types:
                continue
            self.probes += 1
            answer = _envelope(
                "<d:ProbeMatches><d:ProbeMatch>"
                f"<a:EndpointReference><a:Address>{self.endpoint}</a:Address></a:EndpointReference>"
                "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
                "<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/hardware/TEST-CAM"
                " onvif://www.onvif.org/name/TestCam</d:Scopes>"
                f"<d:XAddrs>{self.device_url}</d:XAddrs>"
                "<d:MetadataVersion>1</d:MetadataVersion>"
                "</d:ProbeMatch></d:ProbeMatches>",
                header=f"<a:Action>{D}/ProbeMatches</a:Action><a:MessageID>urn:uuid:answer-{self.probes}</a:MessageID>"
                f"<a:RelatesTo>{msg_id}</a:RelatesTo><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>",
            )
            sock.sendto(answer, peer)

    # -- SOAP --

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def _authorized(self, root: ET.Element) -> bool:
        token = root.find(f"{{{S}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        user = token.findtext(f"{{{WSSE}}}Username")
        digest = token.findtext(f"{{{WSSE}}}Password")
        nonce = token.findtext(f"{{{WSSE}}}Nonce")
        created = token.findtext(f"{{{WSU}}}Created")
        if not (user and digest and nonce and created) or user != self.user:
            return False
        expect = base64.b64encode(
            hashlib.sha1(base64.b64decode(nonce) + created.encode() + self.password.encode()).digest()  # noqa: S324
        ).decode()
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        return digest == expect and abs((when - self.now()).total_seconds()) < 5

    def _soap(self, path: str, data: bytes) -> tuple[int, bytes]:
        try:
            root = ET.fromstring(data)  # noqa: S314
        except ET.ParseError:
            return 400, b"not XML"
        body = root.find(f"{{{S}}}Body")
        if body is None or len(body) == 0:
            return 400, b"no body"
        op = body[0].tag.rsplit("}", 1)[-1]
        authorized = self._authorized(root)
        self.requests.append((op, authorized))
        if op == "GetSystemDateAndTime":
            t = self.now()
            return 200, _envelope(
                "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
                "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
                f"<tt:UTCDateTime><tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
                f"<tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>{t.year}</tt:Year>"
                f"<tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date></tt:UTCDateTime>"
                "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
            )
        if not authorized:
            return 400, NOT_AUTHORIZED
        if path.endswith("/device_service") and op == "GetDeviceInformation":
            return 200, _envelope(
                "<tds:GetDeviceInformationResponse><tds:Manufacturer>TestVendor</tds:Manufacturer>"
                "<tds:Model>TC-100</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>"
                "<tds:SerialNumber>SN0001</tds:SerialNumber><tds:HardwareId>1</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>"
            )
        if path.endswith("/device_service") and op == "GetCapabilities":
            return 200, _envelope(
                "<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Media><tt:XAddr>{self.media_url}</tt:XAddr></tt:Media>"
                "</tds:Capabilities></tds:GetCapabilitiesResponse>"
            )
        if path.endswith("/media_service") and op == "GetProfiles":
            items = "".join(
                f'<trt:Profiles token="{tok}" fixed="true"><tt:Name>{name}</tt:Name>'
                f'<tt:VideoEncoderConfiguration token="enc{i}"><tt:Name>enc{i}</tt:Name>'
                "<tt:UseCount>1</tt:UseCount>"
                f"<tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height>"
                "</tt:Resolution></tt:VideoEncoderConfiguration></trt:Profiles>"
                for i, (tok, name, w, h, _p) in enumerate(self.profiles)
            )
            return 200, _envelope(f"<trt:GetProfilesResponse>{items}</trt:GetProfilesResponse>")
        if path.endswith("/media_service") and op == "GetStreamUri":
            token = body[0].findtext(f"{{{TRT}}}ProfileToken")
            proto = body[0].findtext(f"{{{TRT}}}StreamSetup/{{{TT}}}Transport/{{{TT}}}Protocol")
            for tok, _n, _w, _h, rtsp_path in self.profiles:
                if tok == token and proto == "RTSP":
                    return 200, _envelope(
                        "<trt:GetStreamUriResponse><trt:MediaUri>"
                        f"<tt:Uri>rtsp://127.0.0.1:8554{rtsp_path}</tt:Uri>"
                        "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
                        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
                        "</trt:MediaUri></trt:GetStreamUriResponse>"
                    )
            return 400, _envelope(
                "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code>"
                "<s:Reason><s:Text>no such profile</s:Text></s:Reason></s:Fault>"
            )
        return 400, _envelope(
            "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code>"
            f"<s:Reason><s:Text>{op} not supported here</s:Text></s:Reason></s:Fault>"
        )
