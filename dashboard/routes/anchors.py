"""The signed chain-heads feed (``sessions/anchors.py``): observers and everyone above download
it and keep it, to check the archive later with ``evalwatch verify --config F --anchors FEED.json
--key hub.pem``.

``GET /api/anchors/feed[?limit=N&since=ISO]`` — admin, supervisor, auditor, observer; audited
(``anchor_feed``) for every role.  The newest ``limit`` (default 24, at most 1000) records at or
after ``since``, oldest first, each as the hub signed it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from dashboard.deps import Audit, State
from dashboard.policy import ROLES, Principal, allow
from sessions.anchors import FEED_MAX, AnchorFeed, AnchorRecord, feed_records
from storage.chain import iso_ms

router = APIRouter(tags=["anchors"])


@router.get("/api/anchors/feed", response_model=AnchorFeed)
async def anchor_feed(
    auditor: Audit,
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow(*ROLES))],
    limit: Annotated[int, Query(ge=1, le=FEED_MAX)] = 24,
    since: Annotated[datetime | None, Query()] = None,
) -> AnchorFeed:
    """The newest signed anchors of every camera's chain head (keep them: `evalwatch verify
    --anchors`)."""
    from sessions.signing import HubKey

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    records = await feed_records(st.db, limit=limit, since=since)
    key = await asyncio.to_thread(HubKey.load_or_create, st.cfg.storage.data_dir)
    anchors = getattr(st.services, "anchors", None)
    store = getattr(anchors, "store", None)
    await auditor(
        "anchor_feed",
        target=records[-1]["anchored_at"] if records else None,
        details={"records": len(records), "limit": limit},
    )
    return AnchorFeed(
        generated_at=iso_ms(datetime.now(UTC)),
        key_id=key.key_id,
        public_key=key.public_pem(),
        anchor_store=store.describe() if store is not None else None,
        anchors=[AnchorRecord.model_validate(r) for r in records],
    )
