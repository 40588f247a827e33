"""Hash-chain verification from object storage alone: each kind of tampering is detected."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evalwatch.verify import cli as verify_cli
from storage.chain import GENESIS, chain_key, compute_link_hash, link_fields
from storage.segments import SegmentMeta, SegmentStore
from storage.verify import verify_chain

T0 = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)


async def archive(store: SegmentStore, site: str, n: int = 4) -> list:
    out = []
    for i in range(n):
        start = T0 + timedelta(seconds=10 * i)
        m = SegmentMeta(site=site, room="r1", camera="c1", start=start, end=start + timedelta(seconds=10))
        out.append(await store.put(m, f"video bytes {i} ".encode() * 100))
    return out


def raw_put(store: SegmentStore, key: str, data: bytes) -> None:
    """Tamper directly through the minio client, bypassing evalwatch."""
    store.objects.client.put_object(store.bucket, key, io.BytesIO(data), len(data))


def raw_get(store: SegmentStore, key: str) -> bytes:
    r = store.objects.client.get_object(store.bucket, key)
    try:
        return r.read()
    finally:
        r.close()
        r.release_conn()


def test_link_hash_is_deterministic_and_covers_every_field() -> None:
    f = link_fields(
        site="s",
        room="r",
        camera="c",
        seq=1,
        key="s/r/c/x.mp4",
        start=T0,
        end=T0 + timedelta(seconds=1),
        sha256="a" * 64,
        size=3,
        content_type="video/mp4",
        source="live",
        prev_hash=GENESIS,
    )
    h = compute_link_hash(f)
    assert h == compute_link_hash(dict(reversed(list(f.items()))))
    for k, v in [
        ("size", 4),
        ("sha256", "b" * 64),
        ("start", "2026-03-01T02:00:00.001Z"),
        ("seq", 2),
        ("source", "backfill"),
    ]:
        assert compute_link_hash({**f, k: v}) != h, k


async def test_intact_chain_verifies(segment_store: SegmentStore, unique_site: str) -> None:
    recs = await archive(segment_store, unique_site)
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.ok, res
    assert res.links_checked == 4 and res.segments_checked == 4
    assert res.head_hash == recs[-1].link_hash
    ranged = await verify_chain(
        segment_store.objects, unique_site, "r1", "c1", T0 + timedelta(seconds=12), T0 + timedelta(seconds=25)
    )
    assert ranged.ok and ranged.segments_checked == 2 and ranged.links_checked == 4
    empty = await verify_chain(segment_store.objects, unique_site, "r1", "nothing")
    assert empty.ok and empty.links_checked == 0


async def test_missing_segment_detected(segment_store: SegmentStore, unique_site: str) -> None:
    recs = await archive(segment_store, unique_site)
    segment_store.objects.client.remove_object(segment_store.bucket, recs[2].key)
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert not res.ok and res.problem == "missing" and res.seq == 3 and res.key == recs[2].key
    assert recs[2].key in res.message
    # outside the requested range the missing bytes are not fetched
    early = await verify_chain(segment_store.objects, unique_site, "r1", "c1", T0, T0 + timedelta(seconds=15))
    assert early.ok


async def test_missing_link_detected(segment_store: SegmentStore, unique_site: str) -> None:
    await archive(segment_store, unique_site)
    segment_store.objects.client.remove_object(segment_store.bucket, chain_key(unique_site, "r1", "c1", 2))
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "missing" and res.seq == 2 and "link seq 2" in res.message


async def test_altered_segment_detected(segment_store: SegmentStore, unique_site: str) -> None:
    recs = await archive(segment_store, unique_site)
    data = bytearray(raw_get(segment_store, recs[1].key))
    data[50] ^= 0xFF  # same size, one byte flipped
    raw_put(segment_store, recs[1].key, bytes(data))
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "altered" and res.seq == 2 and res.key == recs[1].key


async def test_altered_link_detected(segment_store: SegmentStore, unique_site: str) -> None:
    recs = await archive(segment_store, unique_site)
    k = chain_key(unique_site, "r1", "c1", 3)
    doc = json.loads(raw_get(segment_store, k))
    doc["end"] = "2026-03-01T02:00:45.000Z"  # stretch the time span without re-hashing
    raw_put(segment_store, k, json.dumps(doc).encode())
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "altered" and res.seq == 3 and res.key == k
    assert recs


async def test_reordered_links_detected(segment_store: SegmentStore, unique_site: str) -> None:
    await archive(segment_store, unique_site)
    k2, k3 = (chain_key(unique_site, "r1", "c1", s) for s in (2, 3))
    a, b = raw_get(segment_store, k2), raw_get(segment_store, k3)
    raw_put(segment_store, k2, b)
    raw_put(segment_store, k3, a)
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "reordered" and res.seq == 2 and "says seq 3" in res.message


async def test_rehashed_reordering_detected(segment_store: SegmentStore, unique_site: str) -> None:
    """An attacker who rewrites links consistently (swap times of seq 2 and 3, rehash all)
    still breaks the chain anchored at the head hash, and live time must not go backwards."""
    recs = await archive(segment_store, unique_site)
    prev = recs[0].link_hash
    for r, other in ((recs[1], recs[2]), (recs[2], recs[1]), (recs[3], recs[3])):
        f = {
            **r.link_fields(),
            "start": other.link_fields()["start"],
            "end": other.link_fields()["end"],
            "prev_hash": prev,
        }
        prev = compute_link_hash(f)
        raw_put(
            segment_store,
            chain_key(unique_site, "r1", "c1", r.seq),
            json.dumps({**f, "link_hash": prev}).encode(),
        )
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "reordered" and res.seq == 3 and "before the previous live segment" in res.message


async def test_inserted_object_detected(segment_store: SegmentStore, unique_site: str) -> None:
    await archive(segment_store, unique_site)
    forged = f"{unique_site}/r1/c1/2026/03/01/020005_000.mp4"
    raw_put(segment_store, forged, b"forged footage")
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "inserted" and res.key == forged and forged in res.message
    # a range that excludes the forged object's time does not report it
    late = await verify_chain(
        segment_store.objects, unique_site, "r1", "c1", T0 + timedelta(seconds=20), None
    )
    assert late.ok


async def test_inserted_link_detected(segment_store: SegmentStore, unique_site: str) -> None:
    recs = await archive(segment_store, unique_site)
    forged_key = f"{unique_site}/r1/c1/2026/03/01/020040_000.mp4"
    raw_put(segment_store, forged_key, b"forged")
    f = {**recs[3].link_fields(), "seq": 5, "key": forged_key, "prev_hash": "f" * 64}
    raw_put(
        segment_store,
        chain_key(unique_site, "r1", "c1", 5),
        json.dumps({**f, "link_hash": compute_link_hash(f)}).encode(),
    )
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1")
    assert res.problem == "inserted" and res.seq == 5


async def test_truncated_tail_detected_with_expected_head(
    segment_store: SegmentStore, unique_site: str
) -> None:
    recs = await archive(segment_store, unique_site)
    segment_store.objects.client.remove_object(segment_store.bucket, recs[3].key)
    segment_store.objects.client.remove_object(segment_store.bucket, chain_key(unique_site, "r1", "c1", 4))
    assert (await verify_chain(segment_store.objects, unique_site, "r1", "c1")).ok  # invisible from S3 alone
    res = await verify_chain(segment_store.objects, unique_site, "r1", "c1", expected_head=4)
    assert res.problem == "missing" and res.seq == 4


async def test_verify_cli(
    segment_store: SegmentStore, unique_site: str, s3_server, tmp_path: Path, capsys
) -> None:
    recs = await archive(segment_store, unique_site, 2)
    cfg = s3_server.cfg
    conf = tmp_path / "evalwatch.yaml"
    conf.write_text(
        "storage:\n"
        f"  s3:\n    endpoint: {cfg.endpoint}\n    embedded: false\n"
        f"    access_key: {cfg.access_key.get_secret_value()}\n"
        f"    secret_key: {cfg.secret_key.get_secret_value()}\n"
        "secrets_file: null\n"
    )
    cam = f"{unique_site}/r1/c1"
    import asyncio

    run = lambda argv: asyncio.to_thread(verify_cli, argv)  # noqa: E731 - cli runs its own loop
    assert await run(["--config", str(conf), "--camera", cam]) == 0
    assert capsys.readouterr().out.startswith(f"OK {cam}: 2 links, 2 segments")
    assert (
        await run(
            [
                "--config",
                str(conf),
                "--camera",
                cam,
                "--from",
                "2026-03-01T10:00:05+08:00",
                "--to",
                "2026-03-01T02:00:08Z",
            ]
        )
        == 0
    )
    segment_store.objects.client.remove_object(segment_store.bucket, recs[1].key)
    assert await run(["--config", str(conf), "--camera", cam]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "missing" in out and recs[1].key in out
    assert await run(["--config", str(conf), "--camera", "only-two/parts"]) == 2
    assert await run(["--config", str(conf), "--camera", cam, "--from", "yesterday"]) == 2
    assert await run(["--camera", cam]) == 2
    err = capsys.readouterr().err
    assert "site/room/camera" in err and "Traceback" not in err
    assert cfg.secret_key.get_secret_value() not in err


def test_verify_cli_zip_goes_to_evidence_verifier(tmp_path: Path, capsys) -> None:
    """A .zip argument is not parsed as --config/--camera (that would exit 2 with a usage line)."""
    rc = verify_cli([str(tmp_path / "nonexistent.zip")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "--camera" not in err and "Traceback" not in err
