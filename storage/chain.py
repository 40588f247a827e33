"""Per-camera hash chain over archived segments.

Each segment appended for a camera gets a *link*: a small JSON document whose fields are

    v, site, room, camera, seq, key, start, end, sha256, size, content_type, source, prev_hash

and ``link_hash = sha256( prev_hash + canonical_json(fields) )`` (hex, UTF-8), where
``canonical_json`` is ``json.dumps(fields, sort_keys=True, separators=(",", ":"),
ensure_ascii=True)`` and times are ISO-8601 UTC with milliseconds and a ``Z``
(``2026-03-01T10:00:00.000Z``).  ``seq`` counts from 1; the first link's ``prev_hash`` is
``GENESIS`` (64 zeros).  The link stored in object storage (``<camera prefix>/chain/%08d.json``)
is ``fields`` plus ``link_hash``, so the chain can be checked from object storage alone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from storage.common import CameraId

GENESIS = "0" * 64
CHAIN_VERSION = 1
LINK_FIELDS = (
    "v",
    "site",
    "room",
    "camera",
    "seq",
    "key",
    "start",
    "end",
    "sha256",
    "size",
    "content_type",
    "source",
    "prev_hash",
)


def iso_ms(t: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``; naive datetimes are rejected."""
    if t.tzinfo is None:
        raise ValueError("naive datetime in chain link; UTC-aware datetimes only")
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def canonical_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def link_fields(
    *,
    site: str,
    room: str,
    camera: str,
    seq: int,
    key: str,
    start: datetime,
    end: datetime,
    sha256: str,
    size: int,
    content_type: str,
    source: str,
    prev_hash: str,
) -> dict[str, Any]:
    """The hashed fields of one link, in canonical form."""
    return {
        "v": CHAIN_VERSION,
        "site": site,
        "room": room,
        "camera": camera,
        "seq": int(seq),
        "key": key,
        "start": iso_ms(start),
        "end": iso_ms(end),
        "sha256": sha256,
        "size": int(size),
        "content_type": content_type,
        "source": source,
        "prev_hash": prev_hash,
    }


def compute_link_hash(fields: dict[str, Any]) -> str:
    """``sha256(prev_hash ‖ canonical_json(fields))`` over exactly ``LINK_FIELDS``."""
    body = {k: fields[k] for k in LINK_FIELDS}
    return hashlib.sha256((str(fields["prev_hash"]) + canonical_json(body)).encode("utf-8")).hexdigest()


def link_document(fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON object stored in object storage: the fields plus their ``link_hash``."""
    return {**{k: fields[k] for k in LINK_FIELDS}, "link_hash": compute_link_hash(fields)}


def link_bytes(fields: dict[str, Any]) -> bytes:
    return (canonical_json(link_document(fields)) + "\n").encode("utf-8")


def camera_prefix(site: str, room: str, camera: str) -> str:
    return f"{CameraId(site, room, camera).path}/"


def chain_key(site: str, room: str, camera: str, seq: int) -> str:
    return f"{camera_prefix(site, room, camera)}chain/{seq:08d}.json"


# --- purged ranges (retention) ------------------------------------------------------------------

PURGE_RECORD_TYPE = "evalwatch-purged-range"


def purge_record_key(site: str, room: str, camera: str, first_seq: int, last_seq: int) -> str:
    """Where the record of a purged range of links lives, beside the links."""
    return f"{camera_prefix(site, room, camera)}chain/purged/{first_seq:08d}-{last_seq:08d}.json"


def purge_record(
    *,
    site: str,
    room: str,
    camera: str,
    first_seq: int,
    last_seq: int,
    first_prev_hash: str,
    last_link_hash: str,
    start: datetime,
    end: datetime,
    segments: int,
    run_id: str,
    purged_at: datetime,
) -> dict[str, Any]:
    """The record of links ``first_seq..last_seq`` deleted by a retention purge: verification
    skips them and resumes at ``last_seq + 1`` from ``last_link_hash`` (the anchor), after
    checking that ``first_prev_hash`` is the hash of the link before the range."""
    return {
        "type": PURGE_RECORD_TYPE,
        "v": CHAIN_VERSION,
        "site": site,
        "room": room,
        "camera": camera,
        "first_seq": int(first_seq),
        "last_seq": int(last_seq),
        "first_prev_hash": first_prev_hash,
        "last_link_hash": last_link_hash,
        "start": iso_ms(start),
        "end": iso_ms(end),
        "segments": int(segments),
        "run_id": run_id,
        "purged_at": iso_ms(purged_at),
    }
