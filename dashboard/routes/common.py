"""Helpers shared by the routers."""

from __future__ import annotations

import logging
from typing import Any

from dashboard.errors import ApiError
from dashboard.state import DashState

log = logging.getLogger("evalwatch.dashboard")


def _is_missing(e: BaseException) -> bool:
    name = type(e).__name__
    code = str(getattr(e, "code", ""))
    return (
        isinstance(e, KeyError | FileNotFoundError)
        or "NoSuch" in name
        or "NotFound" in name
        or "Missing" in name
        or code
        in (
            "NoSuchKey",
            "NoSuchBucket",
        )
    )


async def fetch_object(
    st: DashState, bucket: str, key: str, op: str, offset: int = 0, length: int | None = None
) -> bytes:
    """Bytes of an object (404 ``err.not_found`` when missing, 502 ``err.storage_unavailable``
    on any other store failure — counted in ``evalwatch_s3_errors_total{op}``)."""
    objects: Any = st.services.objects
    if objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        data: bytes = await objects.get_bytes(bucket, key, offset, length)
        return data
    except Exception as e:
        if _is_missing(e):
            raise ApiError(404, "err.not_found") from e
        st.metrics.s3_errors.labels(op=op).inc()
        log.warning("object store %s failed for %s/%s: %s", op, bucket, key, type(e).__name__)
        raise ApiError(502, "err.storage_unavailable") from e
