"""Offline verification of an evidence zip (layout in :mod:`sessions.evidence_format`); needs
no hub, no database and no object store.

Verification (:func:`verify_evidence`) reports the FIRST problem, in this order: unreadable
zip or missing core files; pinned key mismatch (``key``); bad head signature (``signature``);
per camera the chain and its segments (``missing`` / ``altered`` / ``reordered`` /
``inserted``, naming the file and seq); every manifest file's presence and hash; files not in
the manifest (``inserted``); the manifest signature; key ids the manifest or seal.json declare
that differ from the key files (``altered``).  The command line is ``evalwatch verify FILE.zip``
(:func:`evalwatch.verify.verify_zip`).

The key files inside the zip only prove that the zip is consistent with *itself*: anybody can
re-sign a forged zip with a key of their own.  Only a check against keys the verifier already
trusts (``public_pem``: the hub's published key(s)) makes it evidence; without them the result
is ``ok`` (consistent) but not ``intact``, and says UNPINNED.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sessions.evidence_format import EXPORT_KEY_FILE, FORMAT, SEAL_KEY_FILE, progress_bar, sha256_hex
from sessions.signing import key_id, verify_signature
from storage.chain import LINK_FIELDS, compute_link_hash, parse_iso

Problem = Literal["missing", "altered", "reordered", "inserted", "signature", "key", "unreadable"]


@dataclass
class EvidenceResult:
    """Outcome of :func:`verify_evidence`: ``ok`` or the first problem (kind, file, message).

    ``key_id`` is the fingerprint of the key that signed the manifest (export key),
    ``seal_key_id`` that of the key that signed the chain heads; equal unless the hub key changed
    between the seal and the export.  ``ok`` means internally consistent; ``pinned`` that both
    keys were among the trusted keys given; only :attr:`intact` (both) means genuine evidence."""

    ok: bool
    problem: Problem | None = None
    path: str | None = None
    message: str = ""
    key_id: str | None = None
    seal_key_id: str | None = None
    cameras: int = 0
    links: int = 0
    segments: int = 0
    files: int = 0
    pinned: bool = False

    @property
    def intact(self) -> bool:
        return self.ok and self.pinned

    def __str__(self) -> str:
        if not self.ok:
            return f"PROBLEM {self.problem}: {self.message}"
        keys = (
            f"signed by key {self.key_id}"
            if self.seal_key_id in (None, self.key_id)
            else f"chain heads signed by key {self.seal_key_id} (seal key), manifest signed by "
            f"key {self.key_id} (export key)" + (" — check both fingerprints" if self.pinned else "")
        )
        counts = f"{self.cameras} cameras, {self.links} chain links, {self.segments} segments"
        if not self.pinned:
            return (
                f"UNPINNED evidence consistent but signer not verified: {counts}, {self.files} files, "
                f"{keys} — a key carried in the zip, which anybody can make; verify against the hub's "
                "published key (--key hub.pem, --trusted DIR or --config FILE) before relying on it"
            )
        return f"OK evidence intact: {counts}, {self.files} files verified; {keys}"


class _Fail(Exception):
    def __init__(self, kind: Problem, path: str | None, message: str) -> None:
        super().__init__(message)
        self.kind, self.path, self.message = kind, path, message


def verify_evidence(
    path: str | Path, public_pem: str | Sequence[str] | None = None, progress: bool | None = None
) -> EvidenceResult:
    """Verify an evidence zip offline (see module docstring for the order of checks).

    ``public_pem``: the pinned public key(s) (PEM); when given, the seal key and the export key
    of the zip must each be one of them (problem ``key`` otherwise).  Never raises for a bad
    zip: the result names the first problem."""
    res = EvidenceResult(ok=False)
    pinned = [public_pem] if isinstance(public_pem, str) else list(public_pem or [])
    try:
        _verify(Path(path), pinned or None, progress, res)
    except _Fail as f:
        res.problem, res.path, res.message = f.kind, f.path, f.message
        return res
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        # A shape the checks below did not foresee (finding 10 of #12): still a named problem,
        # never a traceback.
        res.problem, res.path = "altered", None
        res.message = f"{path}: malformed evidence document ({type(e).__name__}: {e})"
        return res
    res.ok = True
    res.pinned = bool(pinned)
    return res


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _Fail("altered", name, f"{name} is not valid JSON") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest_shape(m: dict[str, Any]) -> None:
    """The manifest's fields have the types the checks below read (finding 10 of #12: a malformed
    manifest raised AttributeError); :class:`_Fail` names the first field that does not."""

    def bad(what: str) -> _Fail:
        return _Fail("altered", "manifest.json", f"manifest.json is malformed: {what}")

    if m.get("session") is not None and not isinstance(m.get("session"), dict):
        raise bad("'session' must be an object or null")
    cams = m.get("cameras")
    if not isinstance(cams, list):
        raise bad("'cameras' must be a list")
    for i, c in enumerate(cams):
        if not isinstance(c, dict):
            raise bad(f"cameras[{i}] must be an object")
        cam = c.get("camera")
        if not isinstance(cam, str) or len(cam.split("/")) != 3 or not all(cam.split("/")):
            raise bad(f"cameras[{i}].camera must be 'site/room/camera'")
        for k in ("head_seq", "first_seq"):
            if k in c and not _is_int(c[k]):
                raise bad(f"cameras[{i}].{k} must be an integer")
        if not _is_int(c.get("head_seq")):
            raise bad(f"cameras[{i}].head_seq must be an integer")
        segs = c.get("segments")
        if segs is not None and (not isinstance(segs, list) or not all(_is_int(x) for x in segs)):
            raise bad(f"cameras[{i}].segments must be a list of integers")
    files = m.get("files")
    if files is not None and not isinstance(files, list):
        raise bad("'files' must be a list")
    for i, f in enumerate(files or []):
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and _is_int(f.get("size"))
                and isinstance(f.get("sha256"), str)):
            raise bad(f"files[{i}] must be an object with path, size and sha256")


def _key_file(read: Any, name: str) -> tuple[bytes, str]:
    data: bytes = read(name)
    try:
        return data, key_id(data)
    except ValueError as e:
        raise _Fail("altered", name, f"{name}: {e}") from None


def _verify(path: Path, pinned: list[str] | None, progress: bool | None, res: EvidenceResult) -> None:
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise _Fail("unreadable", str(path), f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise _Fail("unreadable", str(path), f"{path}: not a readable zip file ({e})") from None
    with z:
        names = z.namelist()
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise _Fail("inserted", n, f"{n} appears twice in the zip")
            seen.add(n)

        def read(name: str) -> bytes:
            if name not in seen:
                raise _Fail("missing", name, f"{name} is missing")
            try:
                return z.read(name)
            except (zipfile.BadZipFile, OSError, ValueError) as e:  # CRC error = altered bytes
                raise _Fail("altered", name, f"{name} cannot be read intact ({e})") from None

        if "manifest.json" not in seen:
            raise _Fail(
                "unreadable", "manifest.json", f"{path}: not an evalwatch evidence zip (no manifest.json)"
            )
        mbytes = read("manifest.json")
        manifest = _json(mbytes, "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise _Fail(
                "unreadable", "manifest.json", f"{path}: manifest.json is not an evalwatch evidence manifest"
            )
        _check_manifest_shape(manifest)
        pem_bytes, seal_kid = _key_file(read, SEAL_KEY_FILE)  # signed the heads
        man_pem, kid = _key_file(read, EXPORT_KEY_FILE) if EXPORT_KEY_FILE in seen else (pem_bytes, seal_kid)
        res.key_id, res.seal_key_id = kid, seal_kid
        if pinned:
            pins: list[str] = []
            for pem in pinned:
                try:
                    pins.append(key_id(pem))
                except ValueError as e:
                    raise _Fail("key", None, f"--key: {e}") from None
            shown = ", ".join(f"{p[:16]}…" for p in pins)
            if seal_kid == kid and kid not in pins:
                raise _Fail(
                    "key",
                    SEAL_KEY_FILE,
                    f"the export is signed by key {kid[:16]}…, not by the pinned key {shown}",
                )
            if seal_kid not in pins:
                raise _Fail(
                    "key",
                    SEAL_KEY_FILE,
                    f"the chain heads are signed by key {seal_kid[:16]}… ({SEAL_KEY_FILE}), "
                    f"not by a pinned key ({shown})",
                )
            if kid not in pins:
                raise _Fail(
                    "key",
                    EXPORT_KEY_FILE,
                    f"the manifest is signed by key {kid[:16]}… ({EXPORT_KEY_FILE}), "
                    f"not by a pinned key ({shown})",
                )
        seal = _json(read("seal.json"), "seal.json")
        sig = read("manifest.sig").decode("ascii", "replace")
        session_id = (manifest.get("session") or {}).get("id")
        heads: dict[str, dict[str, Any]] = {}
        for h in seal.get("heads", []) if isinstance(seal, dict) else []:
            if isinstance(h, dict) and isinstance(h.get("camera"), str):
                heads[h["camera"]] = h
        cams = manifest.get("cameras")
        if not isinstance(cams, list):
            raise _Fail("altered", "manifest.json", "manifest.json has no camera list")

        # 1. signed heads
        payloads: dict[str, dict[str, Any]] = {}
        for c in cams:
            cam = str(c.get("camera"))
            h = heads.get(cam)
            if h is None:
                raise _Fail("missing", "seal.json", f"seal.json has no sealed head for camera {cam}")
            payload = str(h.get("payload", ""))
            if not verify_signature(pem_bytes, payload.encode("utf-8"), str(h.get("signature", ""))):
                raise _Fail(
                    "signature", "seal.json", f"bad signature on the sealed chain head of camera {cam}"
                )
            p = _json(payload.encode("utf-8"), "seal.json")
            if not isinstance(p, dict) or not _is_int(p.get("head_seq")) or not isinstance(
                p.get("head_hash"), str
            ):
                raise _Fail("altered", "seal.json", f"the sealed head payload of camera {cam} is malformed")
            if p.get("camera") != cam or (p.get("session") or {}).get("id") != session_id:
                raise _Fail(
                    "altered", "seal.json", f"the sealed head for {cam} belongs to another camera or session"
                )
            payloads[cam] = p

        # 2. chain and segments, per camera
        chain_files = {n for n in seen if n.startswith("chain/")}
        seg_files = {n for n in seen if n.startswith("segments/")}
        total_segs = sum(len(c.get("segments") or []) for c in cams)
        bar = progress_bar(total_segs, "verify", progress)
        try:
            for c in cams:
                _verify_camera(c, payloads[str(c["camera"])], read, chain_files, seg_files, res, bar)
        finally:
            bar.close()
        for n in sorted(chain_files):
            raise _Fail("inserted", n, f"{n} is not part of any exported chain")
        for n in sorted(seg_files):
            raise _Fail("inserted", n, f"{n} is not in the chain (no link names it)")

        # 3. every manifest file, then strays
        listed: set[str] = set()
        for f in manifest.get("files") or []:
            name = str(f.get("path"))
            listed.add(name)
            data = read(name)
            if len(data) != f.get("size") or sha256_hex(data) != f.get("sha256"):
                raise _Fail("altered", name, f"{name} does not match its sha256/size in the manifest")
            res.files += 1
        for n in names:
            if n not in listed and n not in ("manifest.json", "manifest.sig"):
                raise _Fail("inserted", n, f"{n} is not in the manifest")

        # 4. the manifest itself, then the key ids it (and seal.json) declare
        if not verify_signature(man_pem, mbytes, sig.strip()):
            raise _Fail("signature", "manifest.json", "bad signature on manifest.json (edited after export)")
        for doc, field_, want, name in (
            (manifest, "key_id", kid, "manifest.json"),
            (manifest, "seal_key_id", seal_kid, "manifest.json"),
            (seal, "key_id", seal_kid, "seal.json"),
        ):
            got = doc.get(field_) if isinstance(doc, dict) else None
            if got is not None and got != want:
                raise _Fail(
                    "altered",
                    name,
                    f"{name} names {field_} {str(got)[:16]}…, but the key file is {want[:16]}…",
                )
        res.cameras = len(cams)


def _verify_camera(
    c: dict[str, Any],
    p: dict[str, Any],
    read: Any,
    chain_files: set[str],
    seg_files: set[str],
    res: EvidenceResult,
    bar: Any,
) -> None:
    cam = str(c["camera"])
    head_seq, head_hash = int(p["head_seq"]), str(p["head_hash"])
    if int(c.get("head_seq", -1)) != head_seq:
        raise _Fail(
            "altered", "manifest.json", f"{cam}: manifest head seq differs from the sealed head {head_seq}"
        )
    first = int(c.get("first_seq", head_seq + 1))
    exported = {int(x) for x in c.get("segments") or []}
    if first < int(p.get("first_seq", 1)) and exported and min(exported) < int(p.get("first_seq", 1)):
        raise _Fail("inserted", None, f"{cam}: segments before the session's first seq {p.get('first_seq')}")
    site, room, camera = cam.split("/", 2)
    prefix = f"chain/{cam}/"
    docs: dict[int, dict[str, Any]] = {}
    prev: str | None = None
    last_live: datetime | None = None
    for seq in range(first, head_seq + 1):
        name = f"{prefix}{seq:08d}.json"
        if name not in chain_files:
            raise _Fail("missing", name, f"chain link seq {seq} of {cam} is missing ({name})")
        chain_files.discard(name)
        doc = _json(read(name), name)
        if not isinstance(doc, dict) or any(k not in doc for k in (*LINK_FIELDS, "link_hash")):
            raise _Fail("altered", name, f"{name} is not a chain link document")
        if compute_link_hash(doc) != doc["link_hash"]:
            raise _Fail("altered", name, f"chain link {name} (seq {seq}) does not match its link_hash")
        if doc["seq"] != seq:
            raise _Fail(
                "reordered", name, f"chain link stored as seq {seq} says seq {doc['seq']} ({doc['key']})"
            )
        if prev is not None and doc["prev_hash"] != prev:
            kind: Problem = "inserted" if seq == head_seq else "reordered"
            raise _Fail(kind, name, f"chain link seq {seq} of {cam} does not chain onto seq {seq - 1}")
        if (doc["site"], doc["room"], doc["camera"]) != (site, room, camera):
            raise _Fail("inserted", name, f"chain link {name} belongs to another camera")
        if doc["source"] == "live":
            st = parse_iso(doc["start"])
            if last_live is not None and st < last_live:
                raise _Fail(
                    "reordered", name, f"segment {doc['key']} (seq {seq}) starts before the previous one"
                )
            last_live = st
        prev = doc["link_hash"]
        docs[seq] = doc
        res.links += 1
    if head_seq >= first and prev != head_hash:
        raise _Fail(
            "altered",
            f"{prefix}{head_seq:08d}.json",
            f"the chain of {cam} does not end at the sealed head (seq {head_seq}, {head_hash[:16]}…)",
        )
    by_sha = {d["sha256"]: s for s, d in docs.items()}
    for seq in sorted(exported):
        doc = docs.get(seq)
        if doc is None:
            raise _Fail("inserted", None, f"{cam}: exported segment seq {seq} is outside the sealed chain")
        name = f"segments/{doc['key']}"
        if name not in seg_files:
            raise _Fail("missing", name, f"segment {name} (seq {seq} of {cam}) is missing")
        seg_files.discard(name)
        data = read(name)
        sha = sha256_hex(data)
        if sha != doc["sha256"] or len(data) != doc["size"]:
            other = by_sha.get(sha)
            if other is not None and other != seq:
                raise _Fail(
                    "reordered", name, f"segment {name} (seq {seq} of {cam}) holds the content of seq {other}"
                )
            raise _Fail("altered", name, f"segment {name} (seq {seq} of {cam}) does not match its chain link")
        res.segments += 1
        bar.update(1)
    for n in sorted(seg_files):
        if n.startswith(f"segments/{cam}/"):
            raise _Fail("inserted", n, f"{n} is not in the chain of {cam} (no exported link names it)")
