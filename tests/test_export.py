"""Evidence export round trip and offline verification against every kind of tampering."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_sessions_support import T0, archive, cfg_dict, make_cfg, spec_dict, write_cfg

from evalwatch import export as export_cmd
from evalwatch.verify import verify_zip
from sessions import evidence_verify as ev
from sessions import export as ex
from sessions.evidence_format import sha256_hex
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.models import EventRow


@dataclass
class Sealed:
    cfg: Any
    cfg_path: Path
    db: Any
    objects: Any
    key: HubKey
    site: str
    code: str
    tmp: Path


@pytest.fixture
async def sealed(object_store, s3_server, unique_site: str, tmp_path: Path):
    from storage.db import Database
    from storage.segments import SegmentStore

    site = unique_site
    raw = cfg_dict(site, tmp_path, s3_server.cfg)
    cfg = make_cfg(site, tmp_path, s3_server.cfg)
    cfg_path = write_cfg(tmp_path / "evalwatch.yaml", raw)
    db = Database(cfg.storage.database_url)
    db.upgrade()
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    key = HubKey.load_or_create(cfg.storage.data_dir)
    info = await create_session(db, cfg, parse_spec(spec_dict(site)), "tester")
    await start_session(db, info.id, "sup", now=T0)
    await archive(store, site, "r1", "cam1", T0, [(10, bytes([i]) * (200 + i)) for i in range(1, 6)])
    await archive(store, site, "r1", "cam2", T0, [(10, b"x" * 300), (10, b"y" * 300)])
    snap_key = f"{site}/r1/cam1/2026/03/02/010005_1.jpg"
    await object_store.put_bytes(cfg.storage.s3.bucket_snapshots, snap_key, b"\xff\xd8jpeg", "image/jpeg")

    def add_event(s) -> None:
        s.add(
            EventRow(
                site=site,
                room="r1",
                camera="cam1",
                seat="S1",
                rule="phone",
                started_at=T0 + timedelta(seconds=5),
                ended_at=T0 + timedelta(seconds=15),
                confidence=0.8,
                snapshot_key=snap_key,
                status="resolved",
                resolved_by="sup",
                note="确认：使用手机",
            )
        )

    await db.run(add_event)
    await close_session(db, cfg, key, info.id, "sup", objects=object_store, now=T0 + timedelta(minutes=2))
    await store.stop()
    yield Sealed(cfg, cfg_path, db, object_store, key, site, info.code, tmp_path)
    db.dispose()


async def _export(sd: Sealed, name: str = "ev.zip", **kw: Any) -> Path:
    r = await ex.export_session(
        sd.db, sd.objects, sd.cfg, sd.key, sd.code, sd.tmp / name, actor="aud", progress=False, **kw
    )
    return r.path


def _rewrite(src: Path, dst: Path, mutate: Callable[[dict[str, bytes]], None]) -> Path:
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    mutate(files)
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return dst


def _segs(files: dict[str, bytes], cam: str = "cam1") -> list[str]:
    return sorted(n for n in files if n.startswith("segments/") and f"/{cam}/" in n)


async def test_round_trip_verifies(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    path = await _export(sealed)
    res = ev.verify_evidence(path)
    assert res.ok, res.message
    assert (res.cameras, res.segments, res.links) == (3, 7, 7)
    assert res.key_id == sealed.key.key_id
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        events = json.loads(z.read("events.json"))
    assert {"manifest.json", "manifest.sig", "public_key.pem", "seal.json", "events.json"} <= names
    assert len([n for n in names if n.startswith("segments/")]) == 7
    assert events[0]["rule"] == "phone" and events[0]["resolved_by"] == "sup"
    assert events[0]["snapshot"] in names
    assert manifest["exported_by"] == "aud"
    good = sealed.tmp / "good.pem"
    good.write_text(sealed.key.public_pem())
    other = sealed.tmp / "other.pem"
    other.write_text(HubKey.generate().public_pem())
    assert verify_zip(str(path), ["--key", str(good), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("OK evidence intact")
    # the evalwatch verify entry point hands .zip files to verify_zip
    from evalwatch.verify import cli as verify_cli

    assert verify_cli([str(path), "--key", str(good)]) == 0
    # pinning the right key passes, another key fails
    assert verify_zip(str(path), ["--key", str(other), "--no-progress"]) == 1
    assert "not by the pinned key" in capsys.readouterr().out


async def test_partial_export_range_and_camera(sealed: Sealed) -> None:
    path = await _export(
        sealed,
        "part.zip",
        start=T0 + timedelta(seconds=15),
        end=T0 + timedelta(seconds=25),
        cameras=[f"{sealed.site}/r1/cam1"],
    )
    res = ev.verify_evidence(path)
    assert res.ok, res.message
    # segments 2 and 3 overlap the range; links 2..5 chain them to the sealed head
    assert (res.cameras, res.segments, res.links) == (1, 2, 4)


def _tamper_cases(site: str) -> list[tuple[str, Callable[[dict[str, bytes]], None], str, str]]:
    def flip(f: dict[str, bytes]) -> None:
        n = _segs(f)[2]
        b = bytearray(f[n])
        b[10] ^= 0x01
        f[n] = bytes(b)

    def delete(f: dict[str, bytes]) -> None:
        del f[_segs(f)[1]]

    def reorder(f: dict[str, bytes]) -> None:
        a, b = _segs(f)[1:3]
        f[a], f[b] = f[b], f[a]

    def insert(f: dict[str, bytes]) -> None:
        f[f"segments/{site}/r1/cam1/2026/03/02/010025_500.mp4"] = b"\x00" * 250

    def insert_link(f: dict[str, bytes]) -> None:
        f[f"chain/{site}/r1/cam1/00000006.json"] = f[f"chain/{site}/r1/cam1/00000005.json"]

    def head(f: dict[str, bytes]) -> None:
        seal = json.loads(f["seal.json"])
        p = json.loads(seal["heads"][0]["payload"])
        p["head_seq"] = 4
        seal["heads"][0]["payload"] = json.dumps(p, sort_keys=True, separators=(",", ":"))
        f["seal.json"] = json.dumps(seal).encode()

    def events(f: dict[str, bytes]) -> None:
        ev = json.loads(f["events.json"])
        ev[0]["resolved_by"] = "someone else"
        f["events.json"] = json.dumps(ev).encode()

    def manifest(f: dict[str, bytes]) -> None:
        m = json.loads(f["manifest.json"])
        m["exported_by"] = "mallory"
        f["manifest.json"] = json.dumps(m).encode()

    return [
        ("flip", flip, "altered", "seq 3 of"),
        ("delete", delete, "missing", "seq 2 of"),
        ("reorder", reorder, "reordered", "(seq 2 of .*) holds the content of seq 3"),
        ("insert", insert, "inserted", "010025_500.mp4 is not in the chain"),
        ("insert_link", insert_link, "inserted", "00000006.json is not part of any exported chain"),
        ("head", head, "signature", "bad signature on the sealed chain head of camera"),
        ("events", events, "altered", "events.json does not match"),
        ("manifest", manifest, "signature", "bad signature on manifest.json"),
    ]


async def test_tampering_is_detected(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    path = await _export(sealed)
    for name, mutate, kind, msg in _tamper_cases(sealed.site):
        bad = _rewrite(path, sealed.tmp / f"bad_{name}.zip", mutate)
        res = ev.verify_evidence(bad)
        assert not res.ok, name
        assert res.problem == kind, (name, res.problem, res.message)
        assert re.search(msg, res.message), (name, res.message)
        assert verify_zip(str(bad), ["--no-progress"]) == 1
        assert f"PROBLEM {kind}" in capsys.readouterr().out


def test_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_zip(str(tmp_path / "nope.zip")) == 2
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert verify_zip(str(junk)) == 2
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("a.txt", "x")
    assert verify_zip(str(other)) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "not a readable zip" in err and "not an evalwatch evidence zip" in err
    assert "Traceback" not in err


async def test_export_cli(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    out = sealed.tmp / "cli.zip"
    cfg = str(sealed.cfg_path)
    assert await asyncio.to_thread(export_cmd.cli, [sealed.code, "--config", cfg, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert verify_zip(str(out), ["--config", cfg, "--no-progress"]) == 0
    capsys.readouterr()
    bad = [
        (["nope", "--config", cfg, "-o", str(out)], "no session 'nope'"),
        ([sealed.code, "--config", cfg, "-o", str(sealed.tmp / "x.tar")], "must be a .zip"),
        ([sealed.code, "--config", cfg, "--from", "yesterday", "-o", str(out)], "not an ISO-8601"),
        ([sealed.code, "--config", cfg, "--from", "2026-03-02T09:00:00", "-o", str(out)], "no timezone"),
        ([sealed.code, "--config", cfg, "--camera", "a/b", "-o", str(out)], "site/room/camera"),
        ([sealed.code, "--config", cfg, "--camera", "a/b/c", "-o", str(out)], "not in session"),
        (
            [sealed.code, "--config", cfg, "--from", "2030-01-01T00:00:00Z", "-o", str(out)],
            "does not overlap",
        ),
        ([sealed.code, "--config", str(sealed.tmp / "missing.yaml"), "-o", str(out)], "config error"),
        ([sealed.code, "-o", str(out)], "--config"),
    ]
    for argv, msg in bad:
        assert await asyncio.to_thread(export_cmd.cli, argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err, (argv, err)
        assert "Traceback" not in err

    from sessions.lifecycle import SessionError

    info = await create_session(
        sealed.db, sealed.cfg, parse_spec(spec_dict(sealed.site, code="LATER", seats=[])), "t"
    )
    with pytest.raises(SessionError, match="only a closed"):
        await ex.export_session(
            sealed.db, sealed.objects, sealed.cfg, sealed.key, info.id, sealed.tmp / "x.zip", progress=False
        )


async def test_export_after_hub_key_rotation(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    """A session sealed with key A, exported after the hub moved to key B, verifies: the heads
    against A (``public_key.pem``), the manifest against B (``export_public_key.pem``)."""
    key_a, key_b = sealed.key, HubKey.generate()
    r = await ex.export_session(
        sealed.db, sealed.objects, sealed.cfg, key_b, sealed.code, sealed.tmp / "rot.zip", progress=False
    )
    res = ev.verify_evidence(r.path)
    assert res.ok, res.message
    assert (res.seal_key_id, res.key_id) == (key_a.key_id, key_b.key_id)
    assert f"heads signed by key {key_a.key_id}" in str(res) and key_b.key_id in str(res)
    with zipfile.ZipFile(r.path) as z:
        manifest = json.loads(z.read("manifest.json"))
        seal = json.loads(z.read("seal.json"))
        assert z.read("public_key.pem").decode() == key_a.public_pem()
        assert z.read("export_public_key.pem").decode() == key_b.public_pem()
    assert (manifest["seal_key_id"], manifest["key_id"], seal["key_id"]) == (
        key_a.key_id,
        key_b.key_id,
        key_a.key_id,
    )
    # pinning: every key that signed something must be pinned
    pa, pb = sealed.tmp / "a.pem", sealed.tmp / "b.pem"
    pa.write_text(key_a.public_pem())
    pb.write_text(key_b.public_pem())
    argv = ["--no-progress"]
    assert verify_zip(str(r.path), ["--key", str(pa), "--key", str(pb), *argv]) == 0
    capsys.readouterr()
    assert verify_zip(str(r.path), ["--key", str(pb), *argv]) == 1
    assert "chain heads are signed by key" in capsys.readouterr().out
    assert verify_zip(str(r.path), ["--key", str(pa), *argv]) == 1
    assert "manifest is signed by key" in capsys.readouterr().out

    # dropping the export key makes the manifest check fall back to the seal key: bad signature
    def drop(f: dict[str, bytes]) -> None:
        del f["export_public_key.pem"]

    bad = ev.verify_evidence(_rewrite(r.path, sealed.tmp / "rot_drop.zip", drop))
    assert (bad.ok, bad.problem) == (False, "missing") and "export_public_key.pem" in bad.message

    # a forger's key in place of the export key: verifies only if nobody checks the fingerprint,
    # and a pinned verification names it
    forger = HubKey.generate()

    def forge(f: dict[str, bytes]) -> None:
        f["export_public_key.pem"] = forger.public_pem().encode()
        m = json.loads(f["manifest.json"])
        ev = json.loads(f["events.json"])
        ev[0]["resolved_by"] = "mallory"
        f["events.json"] = json.dumps(ev).encode()
        for entry in m["files"]:
            if entry["path"] in f:
                entry["sha256"] = sha256_hex(f[entry["path"]])
                entry["size"] = len(f[entry["path"]])
        m["key_id"] = forger.key_id
        f["manifest.json"] = json.dumps(m).encode()
        f["manifest.sig"] = forger.sign(f["manifest.json"]).encode()

    forged = _rewrite(r.path, sealed.tmp / "rot_forged.zip", forge)
    assert ev.verify_evidence(forged).key_id == forger.key_id
    assert verify_zip(str(forged), ["--key", str(pa), "--key", str(pb), *argv]) == 1
    assert "PROBLEM key: the manifest is signed by key" in capsys.readouterr().out


async def test_same_key_export_has_one_public_key(sealed: Sealed) -> None:
    """Without a key change the zip carries only ``public_key.pem`` (the layout is unchanged)."""
    path = await _export(sealed, "one.zip")
    with zipfile.ZipFile(path) as z:
        assert "export_public_key.pem" not in z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["seal_key_id"] == manifest["key_id"] == sealed.key.key_id
    res = ev.verify_evidence(path)
    assert res.ok and res.seal_key_id == res.key_id == sealed.key.key_id
    assert f"signed by key {sealed.key.key_id}" in str(res)


def _forge_all(forger: HubKey) -> Callable[[dict[str, bytes]], None]:
    """Rewrite a zip as a forger would: drop a segment, re-sign heads and manifest with their
    own key and put that key in ``public_key.pem``."""

    def forge(f: dict[str, bytes]) -> None:
        seal = json.loads(f["seal.json"])
        for h in seal["heads"]:
            h["signature"] = forger.sign(h["payload"].encode("utf-8"))
        seal["key_id"] = forger.key_id
        f["seal.json"] = json.dumps(seal).encode()
        f["public_key.pem"] = forger.public_pem().encode()
        ev_ = json.loads(f["events.json"])
        ev_[0]["resolved_by"] = "mallory"
        f["events.json"] = json.dumps(ev_).encode()
        m = json.loads(f["manifest.json"])
        for entry in m["files"]:
            entry["sha256"] = sha256_hex(f[entry["path"]])
            entry["size"] = len(f[entry["path"]])
        m["key_id"] = m["seal_key_id"] = forger.key_id
        f["manifest.json"] = json.dumps(m).encode()
        f["manifest.sig"] = forger.sign(f["manifest.json"]).encode()

    return forge


@pytest.mark.security
async def test_verify_without_a_trusted_key_never_says_intact(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 1: a zip re-signed by any key used to print "OK evidence intact" (exit 0) when no
    --key was given, because the key inside the zip was trusted."""
    path = await _export(sealed, "pin.zip")
    forged = _rewrite(path, sealed.tmp / "forged_all.zip", _forge_all(HubKey.generate()))
    assert ev.verify_evidence(forged).ok  # consistent with itself: that proves nothing
    assert not ev.verify_evidence(forged).intact
    for zpath in (forged, path):  # without a trusted key: refused, forged or genuine
        capsys.readouterr()
        assert verify_zip(str(zpath), ["--no-progress"]) == 3
        cap = capsys.readouterr()
        assert "intact" not in cap.out.lower() and cap.out.startswith("UNPINNED")
        assert "signer not verified" in cap.out and "no trusted key" in cap.err
    # the hub's key, as --key, --trusted (file or directory) or --config
    hub_pem = sealed.tmp / "hub.pem"
    hub_pem.write_text(sealed.key.public_pem())
    tdir = sealed.tmp / "trusted"
    tdir.mkdir()
    (tdir / "old.pem").write_text(HubKey.generate().public_pem() + sealed.key.public_pem())
    for argv in (["--key", str(hub_pem)], ["--trusted", str(tdir)], ["--trusted", str(tdir / "old.pem")],
                 ["--config", str(sealed.cfg_path)]):
        assert verify_zip(str(path), [*argv, "--no-progress"]) == 0, argv
        assert capsys.readouterr().out.startswith("OK evidence intact")
        assert verify_zip(str(forged), [*argv, "--no-progress"]) == 1, argv
        out = capsys.readouterr().out
        assert out.startswith("PROBLEM key") and "intact" not in out
    # a rotated key the hub keeps in <data_dir>/keys/trusted/ is trusted with --config
    old = HubKey.generate()
    rotated = await ex.export_session(
        sealed.db, sealed.objects, sealed.cfg, old, sealed.code, sealed.tmp / "old.zip", progress=False
    )
    assert verify_zip(str(rotated.path), ["--config", str(sealed.cfg_path), "--no-progress"]) == 1
    kt = Path(sealed.cfg.storage.data_dir) / "keys" / "trusted"
    kt.mkdir()
    (kt / "2025.pem").write_text(old.public_pem())
    capsys.readouterr()
    assert verify_zip(str(rotated.path), ["--config", str(sealed.cfg_path), "--no-progress"]) == 0
    # an unreadable trusted key is a usage error, not a pass
    assert verify_zip(str(path), ["--key", str(sealed.tmp / "nope.pem"), "--no-progress"]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.security
@pytest.mark.parametrize(
    "manifest_extra",
    [
        {"cameras": [42]},
        {"cameras": [{"camera": "s/r/c", "head_seq": "x"}]},
        {"cameras": [{"camera": "no-slashes", "head_seq": 1}]},
        {"cameras": [], "session": "S1"},
        {"cameras": [], "files": ["a.txt"]},
    ],
)
def test_malformed_manifest_is_a_clear_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest_extra: dict[str, Any]
) -> None:
    """Finding 10 of #12: ``evalwatch verify FILE.zip`` on a manifest of the right format but
    the wrong shape raised AttributeError (a traceback); now it prints PROBLEM naming the field
    and exits 1."""
    from sessions.evidence_format import FORMAT, SEAL_KEY_FILE

    key = HubKey.generate()
    pem = tmp_path / "hub.pem"
    pem.write_text(key.public_pem())
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": FORMAT, **manifest_extra}))
        zf.writestr("manifest.sig", "00")
        zf.writestr(SEAL_KEY_FILE, key.public_pem())
        zf.writestr("seal.json", json.dumps({"heads": []}))
    assert verify_zip(str(z), ["--key", str(pem), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "PROBLEM altered" in out.out and "manifest.json is malformed" in out.out, out
    assert "Traceback" not in out.out + out.err
