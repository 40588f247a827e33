"""``evalwatch agent discover`` against a stand-in ONVIF camera on 127.0.0.1 (issue 13 item 5).

The camera (``testkit.onvif.OnvifCamera``) answers a unicast WS-Discovery probe and serves the
device and media services with WS-UsernameToken digest checks; its clock runs an hour off ours,
so the RTSP URLs come back only if the client dates its tokens in the camera's time.  The
multicast probe is exercised on the loopback interface (the group joined there, on a port of
its own).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from capture.discovery import DiscoveryError, parse_probe_matches, probe_message, ws_discover
from evalwatch.edge import cli
from testkit.onvif import OnvifCamera

pytestmark = pytest.mark.agent

PASSWORD = "cam-secret-123"


@pytest.fixture
def camera():
    with OnvifCamera(password=PASSWORD, clock_offset=3600) as cam:
        yield cam


def _discover(cam: OnvifCamera, *extra: str) -> list[str]:
    return ["discover", "--address", f"127.0.0.1:{cam.udp_port}", "--no-multicast", "--timeout", "2", *extra]


def test_unicast_probe_finds_the_camera_and_its_rtsp_urls(
    camera: OnvifCamera, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([*_discover(camera, "--user", "admin", "--password", PASSWORD), "--json"]) == 0
    out, err = capsys.readouterr()
    (cam,) = json.loads(out)
    assert cam["endpoint"] == camera.endpoint and cam["device_url"] == camera.device_url
    assert (cam["manufacturer"], cam["model"], cam["serial"]) == ("TestVendor", "TC-100", "SN0001")
    assert [(p["token"], p["width"], p["height"], p["encoding"], p["rtsp"]) for p in cam["profiles"]] == [
        ("Profile_1", 1920, 1080, "H264", "rtsp://127.0.0.1:8554/Streaming/Channels/101"),
        ("Profile_2", 640, 480, "H264", "rtsp://127.0.0.1:8554/Streaming/Channels/102"),
    ]
    assert cam["error"] is None
    # every call but the clock was authenticated, with the camera's clock an hour off ours
    assert camera.requests[0] == ("GetSystemDateAndTime", False)
    assert {op for op, _ in camera.requests[1:]} == {
        "GetDeviceInformation",
        "GetCapabilities",
        "GetProfiles",
        "GetStreamUri",
    }
    assert all(ok for _, ok in camera.requests[1:])
    assert PASSWORD not in out + err


def test_table_and_write_append_to_the_camera_list(
    camera: OnvifCamera, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALWATCH_CAMERA_PASSWORD", PASSWORD)
    cams = tmp_path / "cameras.yaml"
    cams.write_text(
        yaml.safe_dump({"cameras": [{"id": "cam-127-0-0-1", "room": "r1", "source": "device:0"}]})
    )
    assert cli([*_discover(camera, "--user", "admin"), "--write", str(cams)]) == 0
    out, err = capsys.readouterr()
    assert "Profile_1" in out and "rtsp://127.0.0.1:8554/Streaming/Channels/101" in out
    assert "1 camera(s) added" in err
    doc = yaml.safe_load(cams.read_text())
    old, new = doc["cameras"]
    assert old == {"id": "cam-127-0-0-1", "room": "r1", "source": "device:0"}  # kept as it was
    assert new["id"] == "cam-127-0-0-1-2" and new["room"] is None  # for the admin to map
    assert new["source"] == "rtsp://127.0.0.1:8554/Streaming/Channels/101"
    assert (new["width"], new["height"]) == (1920, 1080)
    assert new["onvif"]["endpoint"] == camera.endpoint and new["onvif"]["username"] == "admin"
    assert new["substreams"] == [
        {
            "profile": "Profile_2",
            "source": "rtsp://127.0.0.1:8554/Streaming/Channels/102",
            "width": 640,
            "height": 480,
        }
    ]
    # the same camera again: nothing added
    assert cli([*_discover(camera, "--user", "admin"), "--write", str(cams)]) == 0
    assert "0 camera(s) added" in capsys.readouterr().err
    assert len(yaml.safe_load(cams.read_text())["cameras"]) == 2
    assert PASSWORD not in cams.read_text()


def test_wrong_or_missing_credentials_are_named(
    camera: OnvifCamera, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([*_discover(camera, "--user", "admin", "--password", "wrong-pass")]) == 1
    out, err = capsys.readouterr()
    assert "refused the credentials" in out and "wrong-pass" not in out + err
    assert cli(_discover(camera)) == 1
    assert "(none given: --user/--password)" in capsys.readouterr().out


def test_no_answer_is_an_error_within_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))  # a port that receives but never answers
    try:
        port = s.getsockname()[1]
        assert cli(["discover", "--address", f"127.0.0.1:{port}", "--no-multicast", "--timeout", "0.5"]) == 1
    finally:
        s.close()
    assert "no ONVIF device answered (127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--address", "127.0.0.1:port"], "the port must be a number"),
        (["--address", "127.0.0.1:70000"], "port out of range"),
        (["--address", "no-such-host.invalid"], "unknown host"),
        (["--timeout", "0"], "between 0 and 60"),
        (["--no-multicast"], "--no-multicast needs at least one --address"),
        (["--password", "x", "--address", "127.0.0.1"], "a password without --user"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        cli(["discover", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("evalwatch agent discover: ") and message in err and "Traceback" not in err


def test_write_refuses_a_file_that_is_not_a_camera_list(
    camera: OnvifCamera, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("- just\n- a list\n")
    assert cli([*_discover(camera, "--user", "admin", "--password", PASSWORD), "--write", str(bad)]) == 2
    assert "not a camera list" in capsys.readouterr().err
    assert bad.read_text() == "- just\n- a list\n"


def test_probe_answers_are_checked() -> None:
    """Only answers that relate to our probe count; a DTD is refused before parsing."""
    msg_id = "urn:uuid:1111"
    assert b"<d:Types>dn:NetworkVideoTransmitter</d:Types>" in probe_message(msg_id)
    answer = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"><s:Header><a:RelatesTo>{rel}</a:RelatesTo>'
        "</s:Header><s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:cam"
        "</a:Address></a:EndpointReference><d:XAddrs>http://10.0.0.9/onvif/device_service ftp://x</d:XAddrs>"
        "</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>"
    )
    (m,) = parse_probe_matches(answer.format(rel=msg_id).encode(), msg_id, "10.0.0.9:3702")
    assert m.endpoint == "urn:uuid:cam" and m.xaddrs == ["http://10.0.0.9/onvif/device_service"]
    assert parse_probe_matches(answer.format(rel="urn:uuid:other").encode(), msg_id, "x") == []
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(DiscoveryError, match="DTD refused"):
        parse_probe_matches(bomb, msg_id, "x")


def test_unicast_probe_returns_once_every_address_answered(camera: OnvifCamera) -> None:
    t0 = time.monotonic()
    found = ws_discover(multicast=False, addresses=[("127.0.0.1", camera.udp_port)], timeout=5)
    assert [m.endpoint for m in found] == [camera.endpoint] and camera.probes == 1
    assert time.monotonic() - t0 < 2


def test_multicast_probe_on_the_loopback_interface(camera: OnvifCamera) -> None:
    """The multicast path: the group 239.255.255.250 joined on 127.0.0.1 (on its own port, so as
    not to answer the machine's real WS-Discovery traffic); the probe goes out on lo."""
    found = ws_discover(
        multicast=True, interface="127.0.0.1", group=("239.255.255.250", camera.group_port), timeout=1.5
    )
    assert [m.endpoint for m in found] == [camera.endpoint] and camera.probes == 1
    assert found[0].xaddrs == [camera.device_url]


def test_bad_interface_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli(["discover", "--interface", "eth0"])
    assert e.value.code == 2 and "expected a local IPv4 address" in capsys.readouterr().err
