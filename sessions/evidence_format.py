"""The evidence zip: its layout, format name and key files, shared by the writer
(:mod:`sessions.export`) and the offline verifier (:mod:`sessions.evidence_verify`).

Zip layout::

    manifest.json        what was exported and every other file with sha256 + size
    manifest.sig         base64 Ed25519 signature of the exact bytes of manifest.json
    public_key.pem       the SEAL key: the public key that signed the heads in seal.json
    export_public_key.pem  only when the hub key changed after the seal: the EXPORT key, the
                         public key that signed manifest.json (else public_key.pem signed it)
    seal.json            the signed chain heads: {session_id, code, key_id (seal key),
                         heads: [{camera, payload, signature}]}
    chain/<site>/<room>/<camera>/<seq:08d>.json   chain links, from the first exported segment
                                                  up to the sealed head (as archived)
    segments/<archive key>                       the segments, byte for byte as archived
    events.json          the events (rule, seat, times, resolution, who)
    snapshots/<key>      event snapshots
    stitched/<site>_<room>_<camera>.mp4           optional (--stitch): one MP4 per camera
    README.txt

``manifest.json`` names both keys: ``key_id`` (export key, signs the manifest) and
``seal_key_id`` (seal key, signed the heads); they are equal unless the hub key changed.

Why it is verifiable: each head's payload (camera, head seq, head link hash) is signed by the
seal key; every chain link hashes its predecessor, so the head authenticates every link back to
the first exported one, and each link carries its segment's sha256 and size.  The manifest
signature (export key) covers the files outside the chain (events, snapshots, stitched videos).
Two keys mean two fingerprints to check: a forger can keep genuine heads and re-sign a forged
manifest with a key of their own, so compare both with the published ones, or pin both with
``--key`` (repeatable: every key that signed something must be pinned).
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

FORMAT = "evalwatch-evidence"
VERSION = 1
SEAL_KEY_FILE = "public_key.pem"
EXPORT_KEY_FILE = "export_public_key.pem"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def progress_bar(total: int, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr: ``None`` shows it when stderr is a terminal, ``True`` always,
    ``False`` never."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=enabled is False or None)
