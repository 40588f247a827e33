"""Verify a camera's archive from object storage alone (the DB is not trusted).

``verify_chain`` lists every object under ``<site>/<room>/<camera>/``, walks the chain links
``chain/00000001.json, 00000002.json, ...`` in order and reports OK or the FIRST problem:

* ``missing``   — a link number is absent, or a segment a link names is absent;
* ``altered``   — a link's content does not match its ``link_hash``, or a segment's sha256/size
  differs from its link;
* ``reordered`` — a link is stored under another number than its ``seq``, its ``prev_hash`` is not
  the previous link's hash, or live footage goes back in time (backfill links may be older);
* ``inserted``  — an object under the camera prefix that no link names, or an extra link that
  does not chain onto the previous one.

Links deleted by a retention purge (``storage.retention``) are skipped where a purge record
(``chain/purged/<first>-<last>.json``, :func:`storage.chain.purge_record`) says so: the record's
``first_prev_hash`` must be the hash of the link before the range, and the walk resumes after it
from the record's ``last_link_hash`` (the anchor), so what remains still verifies link by link.
Objects of a purged range that are still there (a purge that stopped half-way) are noted, not
checked.

With ``start``/``end`` only links overlapping the range have their segment fetched (all links are
still hashed, since each depends on the one before) and stray objects are reported when their
key's date lies in the range.  Tail truncation (deleting the newest links *and* segments) cannot
be seen from storage alone; pass ``expected_head`` (e.g. the DB's count) to check it.

The ``evalwatch verify`` command that runs it lives in :mod:`evalwatch.verify`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from storage.chain import (
    GENESIS,
    LINK_FIELDS,
    PURGE_RECORD_TYPE,
    camera_prefix,
    chain_key,
    compute_link_hash,
    parse_iso,
)
from storage.common import CameraId
from storage.objects import ObjectMissing, ObjectStore

Problem = Literal["missing", "altered", "reordered", "inserted"]

_LINK_RE = re.compile(r"^chain/(\d{8})\.json$")
_PURGED_RE = re.compile(r"^chain/purged/(\d{8})-(\d{8})\.json$")
_SEG_TIME_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})(\d{2})(\d{2})_(\d{3})\.")


@dataclass
class VerifyResult:
    """``ok`` or the first problem: its kind, the object key and chain seq involved, a message."""

    ok: bool
    camera: str
    links_checked: int = 0
    segments_checked: int = 0
    problem: Problem | None = None
    key: str | None = None
    seq: int | None = None
    message: str = ""
    head_hash: str = GENESIS
    notes: list[str] = field(default_factory=list)
    #: Links skipped because a retention purge deleted them, and the ranges as
    #: ``(first_seq, last_seq, last_link_hash)``.
    purged_links: int = 0
    purged_ranges: list[tuple[int, int, str]] = field(default_factory=list)

    def __str__(self) -> str:
        if self.ok:
            purged = (
                f" ({self.purged_links} older links purged by retention, verified from their anchor)"
                if self.purged_links
                else ""
            )
            return (
                f"OK {self.camera}: {self.links_checked} links, {self.segments_checked} segments verified; "
                f"head {self.head_hash[:16]}{purged}"
            )
        return f"PROBLEM {self.camera}: {self.problem}: {self.message}"


def _key_time(rel: str) -> datetime | None:
    m = _SEG_TIME_RE.match(rel)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    try:
        return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)
    except ValueError:
        return None


async def verify_chain(
    objects: ObjectStore,
    site: str,
    room: str,
    camera: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    bucket: str | None = None,
    expected_head: int | None = None,
) -> VerifyResult:
    """Check the camera's chain and segments in ``bucket`` (default: the configured segments
    bucket).  Raises ``StorageUnavailable`` when S3 cannot be reached."""
    bucket = bucket or objects.cfg.bucket_segments
    prefix = camera_prefix(site, room, camera)
    res = VerifyResult(ok=False, camera=CameraId(site, room, camera).path)

    def fail(kind: Problem, key: str | None, seq: int | None, msg: str) -> VerifyResult:
        res.problem, res.key, res.seq, res.message = kind, key, seq, msg
        return res

    listing = await objects.list(bucket, prefix)
    links: dict[int, str] = {}
    others: list[str] = []
    records: dict[int, list[dict[str, Any]]] = {}
    for info in listing:
        rel = info.key[len(prefix) :]
        m = _LINK_RE.match(rel)
        pm = _PURGED_RE.match(rel)
        if m:
            links[int(m.group(1))] = info.key
        elif pm:
            try:
                rec = json.loads(await objects.get_bytes(bucket, info.key))
                ok = (
                    isinstance(rec, dict)
                    and rec.get("type") == PURGE_RECORD_TYPE
                    and (rec.get("site"), rec.get("room"), rec.get("camera")) == (site, room, camera)
                    and (rec.get("first_seq"), rec.get("last_seq")) == (int(pm.group(1)), int(pm.group(2)))
                    and 1 <= int(rec["first_seq"]) <= int(rec["last_seq"])
                )
            except (ObjectMissing, ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                return fail("altered", info.key, None, f"purge record {info.key} is not a valid record")
            records.setdefault(int(rec["first_seq"]), []).append(rec)
        elif rel.startswith("chain/"):
            return fail("inserted", info.key, None, f"object {info.key} in the chain folder is not a link")
        else:
            others.append(info.key)

    referenced: set[str] = set()
    prev_hash = GENESIS
    last_live_start: datetime | None = None
    n = max([*links, *(int(r["last_seq"]) for rs in records.values() for r in rs)], default=0)
    seq = 0
    while seq < n:
        seq += 1
        starting = records.get(seq)
        if starting:
            for rec in starting:
                if rec["first_prev_hash"] != prev_hash:
                    return fail(
                        "reordered" if seq > 1 else "altered",
                        f"{prefix}chain/purged/{seq:08d}-{int(rec['last_seq']):08d}.json",
                        seq,
                        f"purge record of links {seq}..{rec['last_seq']} does not chain onto seq {seq - 1}",
                    )
            rec = max(starting, key=lambda r: int(r["last_seq"]))
            last = int(rec["last_seq"])
            # A purge that stopped half-way is finished by a later run with a record starting
            # inside this one: the ranges merge, the anchor is the later record's.
            extended = True
            while extended:
                extended = False
                for first, rs in records.items():
                    if seq < first <= last:
                        for r in rs:
                            if int(r["last_seq"]) > last:
                                rec, last, extended = r, int(r["last_seq"]), True
            for left in range(seq, last + 1):
                lkey = links.get(left)
                if lkey is None:
                    continue
                with contextlib.suppress(ObjectMissing, ValueError, TypeError, KeyError):
                    referenced.add(str(json.loads(await objects.get_bytes(bucket, lkey))["key"]))
                referenced.add(lkey)
                res.notes.append(f"link {left} of a purged range is still stored ({lkey})")
            res.notes.append(
                f"links {seq}..{last} ({rec['start']} .. {rec['end']}) purged by retention run "
                f"{rec.get('run_id')} at {rec.get('purged_at')}"
            )
            res.purged_links += last - seq + 1
            res.purged_ranges.append((seq, last, str(rec["last_link_hash"])))
            prev_hash = str(rec["last_link_hash"])
            seq = last
            continue
        lkey = links.get(seq)
        if lkey is None:
            return fail("missing", f"{prefix}chain/{seq:08d}.json", seq, f"chain link seq {seq} is missing")
        try:
            raw = await objects.get_bytes(bucket, lkey)
            doc = json.loads(raw)
            if not isinstance(doc, dict) or any(k not in doc for k in (*LINK_FIELDS, "link_hash")):
                raise ValueError("fields missing")
        except ObjectMissing:
            return fail("missing", lkey, seq, f"chain link {lkey} vanished while verifying")
        except ValueError as e:
            return fail("altered", lkey, seq, f"chain link {lkey} is not a valid link document ({e})")
        if compute_link_hash(doc) != doc["link_hash"]:
            return fail("altered", lkey, seq, f"chain link {lkey} (seq {seq}) does not match its link_hash")
        if doc["seq"] != seq:
            return fail(
                "reordered", lkey, seq, f"chain link stored as seq {seq} says seq {doc['seq']} ({doc['key']})"
            )
        if doc["prev_hash"] != prev_hash:
            kind: Problem = "inserted" if seq == n else "reordered"
            return fail(
                kind, lkey, seq, f"chain link seq {seq} ({doc['key']}) does not chain onto seq {seq - 1}"
            )
        if (doc["site"], doc["room"], doc["camera"]) != (site, room, camera) or not str(
            doc["key"]
        ).startswith(prefix):
            return fail(
                "inserted", lkey, seq, f"chain link seq {seq} belongs to another camera ({doc['key']})"
            )
        seg_start, seg_end = parse_iso(doc["start"]), parse_iso(doc["end"])
        if doc["source"] == "live":
            if last_live_start is not None and seg_start < last_live_start:
                return fail(
                    "reordered",
                    doc["key"],
                    seq,
                    f"segment {doc['key']} (seq {seq}) starts before the previous live segment",
                )
            last_live_start = seg_start
        prev_hash = doc["link_hash"]
        referenced.add(doc["key"])
        res.links_checked += 1
        in_range = (start is None or seg_end > start) and (end is None or seg_start < end)
        if not in_range:
            continue
        try:
            data = await objects.get_bytes(bucket, doc["key"])
        except ObjectMissing:
            return fail("missing", doc["key"], seq, f"segment {doc['key']} (seq {seq}) is missing")
        if len(data) != doc["size"] or hashlib.sha256(data).hexdigest() != doc["sha256"]:
            return fail(
                "altered",
                doc["key"],
                seq,
                f"segment {doc['key']} (seq {seq}) does not match its recorded sha256/size",
            )
        res.segments_checked += 1

    for key in others:
        if key in referenced:
            continue
        t = _key_time(key[len(prefix) :])
        if t is not None and ((start is not None and t < start) or (end is not None and t >= end)):
            continue
        return fail("inserted", key, None, f"object {key} is not in the chain")
    if expected_head is not None and n < expected_head:
        return fail(
            "missing",
            f"{prefix}chain/{n + 1:08d}.json",
            n + 1,
            f"chain ends at seq {n} but {expected_head} segments were archived",
        )
    res.ok = True
    res.head_hash = prev_hash
    return res


# --- the replay badge: one window, against the database's links and a signed head ----------------


@dataclass(frozen=True)
class SignedHead:
    """A chain head whose hash was signed (a closed session's seal), already checked by the caller
    against the hub's trusted keys: ``seq``/``link_hash`` come from the *signed payload*."""

    seq: int
    link_hash: str
    label: str


@dataclass(frozen=True)
class DbLink:
    """One segment row of the hub's database as a chain link (``fields`` = the hashed fields)."""

    fields: dict[str, Any]
    link_hash: str

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def key(self) -> str:
        return str(self.fields["key"])


def _hour_prefixes(prefix: str, start: datetime, end: datetime) -> list[str]:
    """``<camera>/YYYY/MM/DD/HH`` listing prefixes covering ``[start, end)`` (segment keys are
    named by their start, ``HHMMSS_mmm``)."""
    out = []
    t = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while t < end:
        out.append(f"{prefix}{t:%Y/%m/%d/%H}")
        t += timedelta(hours=1)
    return out


async def verify_window(
    objects: ObjectStore,
    site: str,
    room: str,
    camera: str,
    start: datetime,
    end: datetime,
    links: list[DbLink],
    window_seqs: set[int],
    *,
    anchor: SignedHead | None = None,
    bucket: str | None = None,
) -> VerifyResult:
    """Verify the segments of ``[start, end)`` (finding 8 of issue #12: the replay badge).

    ``links`` are the database's rows from the window's first link up to ``anchor.seq`` (or the
    window's last link when there is no anchor), in seq order; ``window_seqs`` the seqs of the
    segments overlapping the window.  Checks, and reports the first problem of:

    * the database links chain (each row's fields hash to its ``link_hash`` and it names the
      previous row's hash) up to the signed head, whose hash they must reach — so rows rewritten
      in the database (even consistently) do not verify against a seal;
    * each window link in object storage is a valid link document with **the database's hash** —
      so history rewritten consistently in object storage (segment, link and every later link)
      no longer verifies, as it did when the badge walked object storage alone;
    * each window segment's bytes match the link's sha256/size;
    * no object under the window's hour prefixes is unknown to the chain (``inserted``).

    Object storage cost: one GET per window link and per window segment plus one LIST per hour of
    the window — bounded by the window, not by the archive's age (the old walk fetched every link
    since the first: ~1.5 M GETs per view at 180 days of 10-s segments).  Links between the window
    and the signed head are hashed from the database only (no S3 call).
    """
    bucket = bucket or objects.cfg.bucket_segments
    prefix = camera_prefix(site, room, camera)
    res = VerifyResult(ok=False, camera=CameraId(site, room, camera).path)

    def fail(kind: Problem, key: str | None, seq: int | None, msg: str) -> VerifyResult:
        res.problem, res.key, res.seq, res.message = kind, key, seq, msg
        return res

    prev: DbLink | None = None
    for link in links:
        if compute_link_hash(link.fields) != link.link_hash:
            return fail("altered", link.key, link.seq,
                        f"the database's link seq {link.seq} ({link.key}) does not match its link_hash")
        if prev is not None:
            if link.seq != prev.seq + 1:
                return fail("missing", chain_key(site, room, camera, prev.seq + 1), prev.seq + 1,
                            f"the database has no link seq {prev.seq + 1}")
            if link.fields["prev_hash"] != prev.link_hash:
                return fail("reordered", link.key, link.seq,
                            f"the database's link seq {link.seq} does not chain onto seq {prev.seq}")
        prev = link
    if anchor is not None:
        if prev is None or prev.seq != anchor.seq or prev.link_hash != anchor.link_hash:
            return fail(
                "altered", chain_key(site, room, camera, anchor.seq), anchor.seq,
                f"the chain from this window does not reach the signed head seq {anchor.seq} "
                f"({anchor.link_hash[:16]}…) of {anchor.label}",
            )
        res.notes.append(f"anchored at the signed head seq {anchor.seq} of {anchor.label}")
    else:
        res.notes.append("no signed head covers this window yet: checked against the database's links")

    referenced: set[str] = set()
    for link in links:
        if link.seq not in window_seqs:
            continue
        lkey = chain_key(site, room, camera, link.seq)
        try:
            doc = json.loads(await objects.get_bytes(bucket, lkey))
            if not isinstance(doc, dict) or any(k not in doc for k in (*LINK_FIELDS, "link_hash")):
                raise ValueError("fields missing")
        except ObjectMissing:
            return fail("missing", lkey, link.seq, f"chain link {lkey} (seq {link.seq}) is missing")
        except ValueError as e:
            return fail("altered", lkey, link.seq, f"chain link {lkey} is not a valid link document ({e})")
        if compute_link_hash(doc) != doc["link_hash"]:
            return fail("altered", lkey, link.seq,
                        f"chain link {lkey} (seq {link.seq}) does not match its link_hash")
        if doc["link_hash"] != link.link_hash:
            return fail(
                "altered", lkey, link.seq,
                f"chain link {lkey} (seq {link.seq}) in object storage differs from the hub's database "
                f"({str(doc['link_hash'])[:16]}… vs {link.link_hash[:16]}…)",
            )
        res.links_checked += 1
        try:
            data = await objects.get_bytes(bucket, link.key)
        except ObjectMissing:
            return fail("missing", link.key, link.seq, f"segment {link.key} (seq {link.seq}) is missing")
        if len(data) != link.fields["size"] or hashlib.sha256(data).hexdigest() != link.fields["sha256"]:
            return fail("altered", link.key, link.seq,
                        f"segment {link.key} (seq {link.seq}) does not match its recorded sha256/size")
        referenced.add(link.key)
        res.segments_checked += 1

    for hp in _hour_prefixes(prefix, start, end):
        for info in await objects.list(bucket, hp):
            if info.key in referenced:
                continue
            t = _key_time(info.key[len(prefix):])
            if t is None or start <= t < end:
                return fail("inserted", info.key, None, f"object {info.key} is not in the chain")
    res.ok = True
    res.head_hash = prev.link_hash if prev is not None else GENESIS
    return res
