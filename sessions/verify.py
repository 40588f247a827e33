"""Verify a session's archive in object storage against its seal (``evalwatch verify --session``).

For each camera of the session: the Ed25519 seal of its chain head verifies with one of the hub's
trusted keys (its key file and rotated keys, never the public key stored in the DB); the camera's
chain verifies from object storage over the session's time window (no missing, altered,
reordered or inserted segment); and the chain link at the sealed ``head_seq`` still has the
sealed ``head_hash`` — so footage deleted or rewritten after closing is caught even though the
chain has grown since.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from config.models import EvalwatchConfig
from sessions.lifecycle import SessionInfo, get_session, verify_seal
from sessions.signing import hub_trusted_pems
from storage.chain import chain_key
from storage.db import Database
from storage.objects import ObjectMissing, ObjectStore
from storage.verify import verify_chain


@dataclass
class SessionVerdict:
    """``ok`` when every check passed; ``lines`` says what was checked, per camera."""

    session: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"PROBLEM {line}")


async def verify_session_archive(cfg: EvalwatchConfig, ident: int | str) -> SessionVerdict:
    """Check session ``ident`` (id or code); raises ``SessionNotFound`` for an unknown session."""
    db = Database(cfg.storage.database_url)
    try:
        info: SessionInfo = await get_session(db, ident)
    finally:
        db.dispose()
    verdict = SessionVerdict(session=info.code)
    if info.status == "closed":
        trusted = await asyncio.to_thread(hub_trusted_pems, cfg.storage.data_dir)
        for problem in verify_seal(info, trusted):
            verdict.fail(f"seal: {problem}")
    else:
        verdict.lines.append(f"note: session {info.code} is {info.status}; no seal to check yet")
    objects = ObjectStore(cfg.storage.s3)
    bucket = cfg.storage.s3.bucket_segments
    start, end = info.window()
    for cam in info.cameras:
        head = info.head(cam.site, cam.room, cam.camera)
        result = await verify_chain(
            objects, cam.site, cam.room, cam.camera, start, end,
            expected_head=head.head_seq if head else None,
        )
        if not result.ok:
            verdict.fail(str(result))
            continue
        sealed_seq = head.head_seq if head else 0
        purged = next((r for r in result.purged_ranges if r[0] <= sealed_seq <= r[1]), None)
        if head is not None and head.head_seq > 0 and purged is not None:
            # The retention purge deleted the sealed head's link: its record keeps the anchor.
            if purged[1] == head.head_seq and purged[2] != head.head_hash:
                verdict.fail(
                    f"{cam.path}: the purge record's anchor {purged[2][:16]}… at seq {head.head_seq} differs "
                    f"from the sealed head {head.head_hash[:16]}…"
                )
                continue
            verdict.lines.append(
                f"note: {cam.path}: the sealed footage (links up to {head.head_seq}) was purged by "
                "retention; the seal signature is all that remains to check"
            )
        elif head is not None and head.head_seq > 0:
            key = chain_key(cam.site, cam.room, cam.camera, head.head_seq)
            try:
                link = json.loads(await objects.get_bytes(bucket, key))
            except (ObjectMissing, ValueError) as e:
                verdict.fail(f"{cam.path}: sealed head link {key} unreadable: {e}")
                continue
            if link.get("link_hash") != head.head_hash:
                verdict.fail(
                    f"{cam.path}: link {head.head_seq} hash {str(link.get('link_hash'))[:16]}… "
                    f"differs from the sealed head {head.head_hash[:16]}…"
                )
                continue
        verdict.lines.append(f"OK {result}")
    return verdict
