"""Render the evaluation set from real photographs shipped by registry packages.

Usage (dev only; the rendered clips are committed)::

    python -m sample_videos.evalset.make --fetch      # print the commands that bring the sources
    python -m sample_videos.evalset.make [--only dev_01] [--out DIR] [--frames N]
    python -m sample_videos.evalset.make --digests    # sha256 of the sources

The room, the camera (OSD, sensor noise, tampering) and the encoder are those of
:mod:`sample_videos.make_samples`; the people are cut out of other photographs
(:mod:`sample_videos.evalset.sources`), one set for the dev half and another
for the test half; everything that happens comes from
:mod:`sample_videos.evalset.script`, which also derives the ground truth.
"""

from __future__ import annotations

import argparse
import functools
import glob
import hashlib
import io
import json
import math
import os
import site
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sample_videos import make_samples as ms
from sample_videos.evalset import sources as srcs
from sample_videos.evalset.script import (
    CLIPS,
    FPS,
    PHONE_H,
    WIDTH,
    EvalClip,
    Frame,
    Handheld,
    Person,
    eval_room_doc,
    frames,
    truth_doc,
)
from sample_videos.make_samples import PAD, Image, MissingSource, blend

HERE = Path(__file__).resolve().parent
#: Folders searched for downloaded packages (wheels, sdists, .deb files, npm tarballs).
DOWNLOADS = [p for p in os.environ.get("EVALWATCH_EVALSET_SOURCES", "").split(":") if p] + [
    "/tmp/evalset-src",  # noqa: S108 (dev-time download dir, as in the README)
    str(Path.home() / ".cache/evalwatch/evalset"),
]

# --------------------------------------------------------------------------- sources


def _site_dirs() -> list[Path]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    return [Path(d) for d in dict.fromkeys(dirs)]


def _read_ar_member(deb: Path, member: str) -> bytes | None:
    """``member`` (``usr/share/...``) from the data archive of a Debian package."""
    raw = deb.read_bytes()
    pos = 8  # "!<arch>\n"
    while pos + 60 <= len(raw):
        name = raw[pos:pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48:pos + 58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tf:
                for cand in (member, "./" + member):
                    try:
                        f = tf.extractfile(cand)
                    except KeyError:
                        continue
                    if f is not None:
                        return f.read()
            return None
        pos += 60 + size + (size & 1)
    return None


def _from_archive(path: Path, member: str) -> bytes | None:
    """``member`` from a wheel / zip, an sdist / npm tarball or a .deb (suffix match)."""
    if path.suffix == ".deb":
        return _read_ar_member(path, member)
    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            return zf.read(names[0]) if names else None
    with tarfile.open(path) as tf:
        for ti in tf.getmembers():
            if ti.name == member or ti.name.endswith("/" + member):
                f = tf.extractfile(ti)
                return f.read() if f else None
    return None


@functools.cache
def read_photo(key: str) -> bytes:
    """Bytes of a source file, from the installed package or its downloaded archive."""
    ph = srcs.PHOTOS[key]
    data: bytes | None = None
    if ph.registry == "pypi":
        for d in _site_dirs():
            if (d / ph.member).is_file():
                data = (d / ph.member).read_bytes()
                break
    elif ph.registry == "debian" and Path("/", ph.member).is_file():
        data = Path("/", ph.member).read_bytes()
    if data is None:
        stem = {"pypi": ph.package.replace("-", "[-_]"),
                "npm": ph.package.lstrip("@").replace("/", "-")}.get(ph.registry, ph.package)
        sep = "_" if ph.registry == "debian" else "-"
        for folder in DOWNLOADS:
            for arch in sorted(glob.glob(f"{folder}/**/{stem}{sep}{ph.version}*", recursive=True)):
                if Path(arch).is_file() and (data := _from_archive(Path(arch), ph.member)):
                    break
            if data:
                break
    if data is None:
        raise MissingSource(f"missing source {key}: {ph.member} of {ph.registry} package "
                            f"{ph.package} {ph.version}; run `{ph.fetch}`")
    digest = hashlib.sha256(data).hexdigest()
    if digest != ph.sha256:
        raise MissingSource(f"source {key} ({ph.package} {ph.version}: {ph.member}) has sha256 "
                            f"{digest}, expected {ph.sha256}: another version of the package?")
    return data


def load_photo(key: str) -> Image:
    """A source photo (or the chosen frame of a source video) decoded to BGR uint8."""
    frame = srcs.PHOTOS[key].frame
    if frame is not None:
        import av

        with av.open(io.BytesIO(read_photo(key)), mode="r") as container:
            for i, f in enumerate(container.decode(video=0)):
                if i == frame:
                    return f.to_ndarray(format="bgr24")
        raise MissingSource(f"source {key} has no frame {frame}")
    img = cv2.imdecode(np.frombuffer(read_photo(key), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MissingSource(f"could not decode source {key}")
    return img


#: Rows kept of a photo whose lower legs are drawn (below, GrabCut's fade-out).
LEG_CUT = 0.95


def person_srcs() -> dict[str, ms.PersonSrc]:
    """The people of :data:`sources.PEOPLE` as the demo renderer's PersonSrc (a photo
    completed with lower legs counts as a full-body one)."""
    return {k: ms.PersonSrc(p.photo, p.box, 1.0 if p.legs else p.seated_frac, p.full_body,
                            p.skin, p.flip, p.size)
            for k, p in srcs.PEOPLE.items()}


def add_torso(cut: ms.Cutout, body_frac: float, target: float,
              cloth: tuple[int, int, int] | None = None) -> ms.Cutout:
    """Complete a head-and-shoulders portrait down to ``target`` standing heights: the
    clothes at its lower edge go on downwards (the desk hides where they end); an open
    collar (skin) is closed with the clothes' colour further down."""
    h, w = cut.alpha.shape
    keep = int(LEG_CUT * h)
    extra = max(2, round((target - LEG_CUT * body_frac) / body_frac * h))
    band_rgb = cut.rgb[int(0.86 * h):keep]
    band_a = cut.alpha[int(0.86 * h):keep]
    ycc = cv2.cvtColor(np.clip(band_rgb, 0, 255).astype(np.uint8), cv2.COLOR_BGR2YCrCb)
    skin = cv2.inRange(ycc, (30, 133, 70), (255, 185, 135)) > 0  # the usual skin range
    cols = np.median(band_rgb, axis=0)  # (w, 3)
    ok = (skin.mean(0) < 0.4) & (band_a.mean(0) > 0.5)
    if cloth is not None:
        cols[:] = cloth
    elif ok.any():  # an open collar: the clothes of both sides meet below it
        idx = np.arange(w)
        for c in range(3):
            cols[:, c] = np.interp(idx, idx[ok], cols[ok, c])
    cols = cv2.GaussianBlur(cols[None], (0, 0), max(1.0, w / 60))[0]
    u = np.clip(np.arange(extra, dtype=np.float32) / (0.25 * extra), 0, 1)[:, None, None]
    last = cut.rgb[keep - 1][None]
    rgb = last * (1 - u) + cols[None] * u
    rgb *= np.linspace(1.0, 0.85, extra, dtype=np.float32)[:, None, None]
    alpha = np.repeat(band_a.max(0, keepdims=True), extra, axis=0)
    alpha *= np.clip((extra - 1 - np.arange(extra)) / (0.08 * extra), 0, 1)[:, None]
    return ms.Cutout(np.vstack([cut.rgb[:keep], rgb.astype(np.float32)]),
                     np.vstack([cut.alpha[:keep], alpha.astype(np.float32)]), cut.src)


def add_legs(cut: ms.Cutout, body_frac: float,
             color: tuple[int, int, int] | None = None) -> ms.Cutout:
    """Complete a standing person photographed down to the knees or shins: the trousers go
    on as two tapering legs down to the feet, with dark shoes."""
    h, w = cut.alpha.shape
    keep = int(LEG_CUT * h)
    rgb, alpha = cut.rgb[:keep], cut.alpha[:keep]
    extra = max(2, round((1.0 - LEG_CUT * body_frac) / (LEG_CUT * body_frac) * keep))
    row = alpha[keep - 6:keep].mean(0)
    cols = np.nonzero(row > 0.5)[0]
    x1, x2 = (int(cols[0]), int(cols[-1])) if len(cols) else (w // 3, 2 * w // 3)
    band = rgb[keep - int(0.04 * h):keep][alpha[keep - int(0.04 * h):keep] > 0.9]
    cloth = np.median(band, axis=0) if len(band) else np.array([50.0, 50.0, 50.0])
    if color is not None:
        cloth = np.array(color, np.float32)
    legs_a = np.zeros((extra * 4, w * 4), np.uint8)
    mid, gap = (x1 + x2) / 2, 0.04 * (x2 - x1)
    for lo, hi in ((x1, mid - gap), (mid + gap, x2)):
        inset = 0.18 * (hi - lo)
        pts = np.array([[lo, 0], [hi, 0], [hi - inset, extra * 0.93], [lo + inset, extra * 0.93]])
        cv2.fillPoly(legs_a, [np.round(pts * 4).astype(np.int32)], 255, cv2.LINE_AA)
        shoe_w = (hi - lo - 2 * inset) * 0.62
        cx = (lo + hi) / 2 + (-1 if lo == x1 else 1) * 0.08 * (hi - lo)
        cv2.ellipse(legs_a, (round(cx * 4), round(extra * 0.95 * 4)), (round(shoe_w * 4),
                    round(0.05 * extra * 4)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    legs_alpha: Image = cv2.resize(legs_a, (w, extra), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    legs_rgb = np.empty((extra, w, 3), np.float32)
    legs_rgb[:] = cloth
    legs_rgb *= np.linspace(1.0, 0.8, extra, dtype=np.float32)[:, None, None]
    legs_rgb[int(0.9 * extra):] = (28, 28, 30)  # shoes
    legs_alpha = cv2.GaussianBlur(legs_alpha, (0, 0), 0.8)
    # blend the seam: the photo's faded last rows over the legs' first ones
    seam = np.maximum(alpha[-1], legs_alpha[0])
    alpha = alpha.copy()
    alpha[-int(0.02 * h):] = np.maximum(alpha[-int(0.02 * h):], seam[None, :] * (row > 0.3))
    return ms.Cutout(np.vstack([rgb, legs_rgb]), np.vstack([alpha, legs_alpha]), cut.src)


def load_cutouts(keys: set[str] | None = None) -> dict[str, ms.Cutout]:
    """Person cut-outs (all, or those in ``keys``)."""
    imgs: dict[str, Image] = {}
    out = {}
    for key, src in person_srcs().items():
        if keys is not None and key not in keys:
            continue
        p = srcs.PEOPLE[key]
        if src.file not in imgs:
            imgs[src.file] = load_photo(src.file)
        img = imgs[src.file]
        if p.erase:
            img = img.copy()
            for x1, y1, x2, y2 in p.erase:
                img[y1:y2, x1:x2] = np.median(img[y1:y2, x1:x2].reshape(-1, 3), axis=0)
        cut = ms.make_cutout(img, src, open_bottom=p.legs or not p.full_body)
        if p.erase:  # and keep them out whatever GrabCut made of them
            bx1, by1, _, by2 = p.box
            k = cut.alpha.shape[0] / (by2 - by1)
            for x1, y1, x2, y2 in p.erase:
                c1, c2 = round((x1 - bx1) * k), round((x2 - bx1) * k)
                if src.flip:
                    c1, c2 = cut.alpha.shape[1] - c2, cut.alpha.shape[1] - c1
                cut.alpha[max(0, round((y1 - by1) * k)):max(0, round((y2 - by1) * k)),
                          max(0, c1):max(0, c2)] = 0
        if p.legs:
            cut = add_legs(cut, p.body_frac, p.leg_color)
        elif p.seated_frac > p.body_frac:
            cut = add_torso(cut, p.body_frac, p.seated_frac, p.cloth)
        out[key] = cut
    return out


# --------------------------------------------------------------------------- things in hand

CASE = {"black": (32, 32, 34), "white": (228, 230, 232), "blue": (150, 92, 42),
        "gold": (128, 178, 212)}
SIZES = {  # (height, width) in standing heights
    "phone": (PHONE_H, PHONE_H * 0.47),
    "calculator": (0.085, 0.05),
    "wallet": (0.055, 0.065),
    "stapler": (0.03, 0.09),
    "cup": (0.055, 0.05),
}


def _rounded(h: int, w: int, r: int) -> Image:
    a = np.zeros((h, w), np.uint8)
    cv2.rectangle(a, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(a, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(a, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return a.astype(np.float32) / 255


def object_sprite(obj: str, face: str, color: str, rng: np.random.Generator,
                  photo: Image | None = None) -> tuple[Image, Image]:
    """A held thing at 4x resolution (rgb float32, alpha): ``face`` is ``front``, ``back``
    or ``edge`` (a phone seen obliquely from the side).  ``photo``: a photographed phone
    side (rectified, see :func:`phone_photo`) used instead of the drawn one."""
    hh, ww = SIZES[obj]
    H = 160
    W = max(8, round(H * ww / hh))
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    if obj == "phone":
        if face == "edge":
            W = max(8, round(W * 0.55))
        a = _rounded(H, W, max(3, W // 7))
        body = np.empty((H, W, 3), np.float32)
        body[:] = CASE[color]
        body *= 1.08 - 0.2 * yy  # light from above
        if photo is not None:
            img = cv2.resize(photo, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)
            return recolour_case(img, a, color, whole=face != "front"), a
        if face == "front":
            bz = max(2, W // 14)
            scr = np.empty((H - 4 * bz, W - 2 * bz, 3), np.float32)
            hue = rng.uniform(0, 180)
            top = cv2.cvtColor(np.array([[[hue, 160, 230]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
            scr[:] = top
            scr *= np.linspace(1.0, 0.55, scr.shape[0], dtype=np.float32)[:, None, None]
            for r in range(5):
                for c in range(4):
                    col = cv2.cvtColor(np.array([[[rng.uniform(0, 180), 200, 240]]], np.uint8),
                                       cv2.COLOR_HSV2BGR)[0, 0].tolist()
                    x, y = int(scr.shape[1] * (0.08 + 0.23 * c)), int(scr.shape[0] * (0.1 + 0.14 * r))
                    s = int(scr.shape[1] * 0.15)
                    cv2.rectangle(scr, (x, y), (x + s, y + s), col, -1, cv2.LINE_AA)
            body[2 * bz:H - 2 * bz, bz:W - bz] = scr
            body = 0.15 * np.array(CASE[color], np.float32) * (1 - a[..., None]) + body
        elif face == "back":
            lens = max(3, W // 5)
            cv2.rectangle(body, (W // 8, H // 14), (W // 8 + 2 * lens, H // 14 + 2 * lens),
                          [c * 0.7 for c in CASE[color]], -1, cv2.LINE_AA)
            for k in range(2):
                cv2.circle(body, (W // 8 + lens // 2 + k * lens, H // 14 + lens), lens // 2,
                           (20, 20, 20), -1, cv2.LINE_AA)
            # a soft highlight along one long edge
            body[:, : max(1, W // 10)] *= 1.25
        return np.clip(body, 0, 255), a
    a = _rounded(H, W, max(3, W // 10))
    body = np.empty((H, W, 3), np.float32)
    if obj == "calculator":
        body[:] = (38, 38, 42)
        cv2.rectangle(body, (W // 8, H // 12), (W - W // 8, H // 4), (120, 150, 135), -1)
        for r in range(5):
            for c in range(4):
                x, y = W // 10 + c * W // 4, H // 3 + r * H // 8
                cv2.rectangle(body, (x, y), (x + W // 6, y + H // 14), (85, 85, 90), -1)
    elif obj == "wallet":
        body[:] = (24, 26, 30)
        cv2.line(body, (0, H // 2), (W, H // 2), (45, 45, 50), max(1, H // 40))
        cv2.rectangle(body, (W // 12, H // 12), (W - W // 12, H - H // 12), (40, 40, 44), 1)
    elif obj == "stapler":
        a = np.zeros((H, W), np.float32)
        cv2.ellipse(a, (W // 2, H // 3), (W // 2 - 2, H // 3), 0, 180, 360, 1.0, -1)
        cv2.rectangle(a, (2, H // 3), (W - 3, H - 1), 1.0, -1)
        body[:] = (30, 30, 34)
        body[int(H * 0.72):] = (160, 160, 165)
    else:  # cup: a white mug with a handle
        a = np.zeros((H, W), np.float32)
        cv2.rectangle(a, (W // 10, H // 8), (W - W // 4, H - 1), 1.0, -1)
        cv2.ellipse(a, (W - W // 4, H // 2), (W // 5, H // 5), 0, -90, 90, 1.0, max(2, W // 14))
        body[:] = (222, 226, 230)
        cv2.ellipse(body, ((W // 10 + W - W // 4) // 2, H // 8), (W * 13 // 40, H // 14), 0, 0, 360,
                    (70, 90, 110), -1)
        body *= 1.05 - 0.25 * np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
    return body, a


def phone_photo(key: str, img: Image) -> Image:
    """A photographed phone side rectified to an upright 160 x 76 px image."""
    ph = srcs.PHONES[key]
    if ph.inpaint:
        mask = np.zeros(img.shape[:2], np.uint8)
        for x1, y1, x2, y2 in ph.inpaint:
            mask[y1:y2, x1:x2] = 255
        img = cv2.inpaint(img, mask, 5, cv2.INPAINT_TELEA)
    h, w = 160, round(160 * SIZES["phone"][1] / SIZES["phone"][0])
    src = np.array(ph.quad, np.float32)
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h),
                               flags=cv2.INTER_AREA)


def recolour_case(img: Image, alpha: Image, color: str, whole: bool) -> Image:
    """Give a photographed phone the case colour ``color``: the whole back (``whole``), or
    the rim around the screen; the photo's shading is kept."""
    lab = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
    target = cv2.cvtColor(np.array([[CASE[color]]], np.uint8), cv2.COLOR_BGR2LAB)[0, 0].astype(np.float32)
    h, w = alpha.shape
    mask: Image = np.ones((h, w), np.float32)
    if not whole:
        rim = max(2, w // 14)
        mask[rim:h - rim, rim:w - rim] = 0
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    new = lab.copy()
    new[..., 0] = target[0] + (lab[..., 0] - lab[..., 0].mean()) * 0.6
    new[..., 1:] = target[1:]
    out = lab + (new - lab) * mask[..., None]
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR).astype(np.float32)


def hand_sprite(h: int, w: int, skin: tuple[int, int, int], fingers: int = 4) -> tuple[Image, Image]:
    """A hand seen from the back gripping something: palm plus ``fingers`` rounded fingers."""
    a = np.zeros((h, w), np.uint8)
    cv2.ellipse(a, (w // 2, int(h * 0.62)), (int(w * 0.42), int(h * 0.36)), 0, 0, 360, 255, -1,
                cv2.LINE_AA)
    fw = max(1, w // (fingers + 1))
    for k in range(fingers):
        x = int(w * 0.14) + k * fw + fw // 2
        cv2.ellipse(a, (x, int(h * 0.3)), (max(1, fw // 2), int(h * 0.26)), 0, 0, 360, 255, -1,
                    cv2.LINE_AA)
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = skin
    rgb *= (1.08 - 0.25 * np.linspace(0, 1, h, dtype=np.float32))[:, None, None]
    for k in range(1, fingers):  # creases between the fingers
        x = int(w * 0.14) + k * fw
        cv2.line(rgb, (x, int(h * 0.1)), (x, int(h * 0.45)), [c * 0.78 for c in skin], 1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(a.astype(np.float32) / 255, (0, 0), 0.6)
    return rgb, alpha


def place(canvas: Image, rgb: Image, alpha: Image, cx: float, cy: float, w: float, h: float,
          ang: float = 0.0, squash: float = 1.0, k: float = 1.0) -> None:
    """Blend a sprite scaled to ``w`` x ``h`` px, rotated by ``ang`` degrees, then squashed
    vertically by ``squash`` (a surface seen at a slant), centred at canvas ``(cx, cy)``;
    ``k``: frame pixels per view pixel (all four multiplied by it)."""
    if k != 1:
        cx, cy, w, h = cx * k, cy * k, w * k, h * k
    sh, sw = alpha.shape
    m = np.array([[w / sw, 0, 0], [0, h / sh, 0]], np.float64)
    rot = cv2.getRotationMatrix2D((0, 0), ang, 1.0)
    m = rot[:, :2] @ m
    m[1] *= squash
    corners = np.array([[0, 0, 1], [sw, 0, 1], [0, sh, 1], [sw, sh, 1]], np.float64) @ m.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    m[0, 2] = -x0 + (m[0, 2])
    m[1, 2] = -y0 + (m[1, 2])
    size = (int(x1 - x0), int(y1 - y0))
    rgba = cv2.warpAffine(np.dstack([rgb, alpha]), m, size, flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    ox = round(cx - (x1 - x0) / 2 - 0.0)
    oy = round(cy - (y1 - y0) / 2)
    blend(canvas, rgba[..., :3], np.clip(rgba[..., 3], 0, 1), ox, oy)


# --------------------------------------------------------------------------- resolution


def frame_size(scale: float) -> tuple[int, int]:
    """(width, height) of a frame rendered at ``scale`` times 640x480 (even, for yuv420p)."""
    return 2 * round(WIDTH * scale / 2), 2 * round(ms.HEIGHT * scale / 2)


def _upscale(img: Image, scale: float) -> Image:
    h, w = img.shape[:2]
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def camera_view_k(canvas: Image, st: Frame, rng: np.random.Generator, cover_tex: Image,
                  gain: float, noise_sigma: float, k: float) -> Image:
    """:func:`make_samples.camera_view` for a world canvas drawn at ``k`` times the view's
    resolution: the same tampering, measured in view pixels."""
    tp = st.tamper
    W, H = frame_size(k)
    pad = round(PAD * k)
    if tp.moved > 0:
        m = tp.moved
        ch, cw = canvas.shape[:2]
        rot = cv2.getRotationMatrix2D((cw / 2, ch / 2), 11.0 * m, 1.0 + 0.06 * m)
        rot[0, 2] += -pad - 95 * m * k
        rot[1, 2] += -pad + 60 * m * k
        frame: Image = cv2.warpAffine(canvas, rot, (W, H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
    else:
        frame = canvas[pad:pad + H, pad:pad + W].copy()
    if tp.defocused > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), (0.3 + 7.5 * tp.defocused) * k)
    if tp.covered > 0:
        c = tp.covered
        blurred = cv2.GaussianBlur(frame, (0, 0), (1 + 14 * c) * k).astype(np.float32)
        out = blurred + (cover_tex[:H, :W] - blurred) * min(1.0, c * 1.05)
        frame = np.clip(out, 0, 255).astype(np.uint8)
    noise = rng.normal(0, noise_sigma, frame.shape).astype(np.float32)
    lit = frame.astype(np.float32) if gain == 1.0 else frame.astype(np.float32) * gain
    return np.clip(lit + noise, 0, 255).astype(np.uint8)


def osd_k(frame: Image, t: float, label: str, k: float) -> None:
    """:func:`make_samples.osd` at ``k`` times the size."""
    h0, m0, s0 = ms.START_CLOCK
    secs = h0 * 3600 + m0 * 60 + s0 + int(t)
    text = f"2025-03-18 {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    H, W = frame.shape[:2]
    for txt, org in ((text, (round(10 * k), round(22 * k))),
                     (label, (round(W - (12 + 9 * len(label)) * k), round(H - 12 * k)))):
        cv2.putText(frame, txt, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * k, (0, 0, 0),
                    round(3 * k), cv2.LINE_AA)
        cv2.putText(frame, txt, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * k, (255, 255, 255),
                    max(1, round(k)), cv2.LINE_AA)


# --------------------------------------------------------------------------- people


class EvalPeople(ms.PersonRenderer):
    """The demo's person renderer with visitors behind, leaning in and crouching."""

    def __init__(self, cutouts: dict[str, ms.Cutout], persons: dict[str, ms.PersonSrc],
                 k: float = 1.0) -> None:
        super().__init__(cutouts, persons)
        self.k = k  #: pixels of the rendered frame per view pixel (see ``--scale``)
        self._heads: dict[str, float] = {}
        self._sleeves: dict[str, tuple[float, float, float]] = {}

    def figure(self, p: Person, lay: ms.Layout) -> tuple[float, float, float | None]:
        """(top row, standing height, clip row) of a person in view coordinates."""
        src = self.persons[p.source]
        height = lay.height_at(p.g) * src.size
        top = p.g - height
        if p.desk is None:
            if not src.full_body:
                raise ValueError(f"{p.source} is a half-body photo and cannot stand or walk")
            return top, height, None
        s = lay.seat(p.desk)
        line = s.desk_top + 0.06 * height
        if p.seated > 0:
            seated_top = line - min(src.body_frac, 0.55) * height
            return (top + (seated_top - top) * p.seated, height,
                    s.desk_front + (line - s.desk_front) * p.seated)
        crouch_top = s.desk_top - 0.24 * height
        return (top + (crouch_top - top) * p.crouch, height,
                s.desk_front + (line - s.desk_front) * p.crouch)

    def head_x(self, p: Person, height: float) -> float:
        """View x of the centre of a person's head (cut-outs are not centred on it)."""
        key = p.source
        if key not in self._heads:
            cut = self.cutouts[key]
            src = self.persons[key]
            a = cut.alpha
            rows = np.nonzero(a.max(1) > 0.5)[0]
            first = int(rows[0]) if len(rows) else 0
            band = a[first:first + max(2, int(0.1 / src.body_frac * a.shape[0]))]
            xs = np.arange(a.shape[1], dtype=np.float32)
            cx = float((band.sum(0) * xs).sum() / max(1e-6, band.sum()))
            self._heads[key] = (cx - a.shape[1] / 2) / a.shape[0]  # in sprite heights
        return p.x + self._heads[key] * self.persons[key].body_frac * height

    def sleeve(self, key: str) -> tuple[float, float, float]:
        """Median colour of a person's torso (their sleeves, for the arms of held things)."""
        if key not in self._sleeves:
            cut = self.cutouts[key]
            h = cut.alpha.shape[0]
            frac = self.persons[key].body_frac
            band = slice(int(0.2 / frac * h), int(0.34 / frac * h))  # chest and upper arms
            px = cut.rgb[band][cut.alpha[band] > 0.9]
            med = np.median(px, axis=0) if len(px) else np.array([60.0, 60.0, 60.0])
            self._sleeves[key] = (float(med[0]), float(med[1]), float(med[2]))
        return self._sleeves[key]

    def arm(self, canvas: Image, p: Person, height: float, hand: tuple[float, float],
            elbow: tuple[float, float]) -> None:
        """A forearm in the person's sleeve colour from ``elbow`` to ``hand`` (canvas px)."""
        (hx, hy), (ex, ey) = hand, elbow
        n = math.hypot(hx - ex, hy - ey) or 1.0
        w_h, w_e = 0.018 * height, 0.026 * height
        nx, ny = -(hy - ey) / n, (hx - ex) / n
        pts = np.array([[hx + nx * w_h, hy + ny * w_h], [hx - nx * w_h, hy - ny * w_h],
                        [ex - nx * w_e, ey - ny * w_e], [ex + nx * w_e, ey + ny * w_e]])
        if self.k != 1:
            pts = pts * self.k
        rgb, a, x0, y0 = ms.poly_sprite(pts, self.sleeve(p.source))
        rgb *= np.linspace(1.05, 0.85, rgb.shape[0], dtype=np.float32)[:, None, None]
        blend(canvas, rgb, a, x0, y0)

    def draw_person(self, canvas: Image, p: Person, t: float, phase: float, lay: ms.Layout,
                    lean: float = 0.0) -> tuple[float, float]:
        """Composite one person; returns the (dx, dy) of their sway (for what they hold)."""
        src = self.persons[p.source]
        top, height, clip = self.figure(p, lay)
        k = self.k
        rgb, a = self.scaled(p.source, max(8, round(src.body_frac * height * k)))
        if clip is not None:
            a = a.copy()
            a[max(0, round((clip - top) * k)):] = 0
        dx, dy, ang = ms.body_motion(p.moving, t, phase, height)
        ang += p.lean - lean
        dy += abs(lean) * 0.004 * height
        bent = p.seated > 0.5 or p.lean != 0
        piv_y = min(a.shape[0] - 1, 0.55 * height * k) if bent else a.shape[0] - 1
        if k == 1:
            ms.composite_figure(canvas, rgb, a, p.x + PAD + dx, top + PAD + dy, piv_y, ang,
                                None if clip is None else clip + PAD)
        else:
            ms.composite_figure(canvas, rgb, a, (p.x + PAD + dx) * k, (top + PAD + dy) * k,
                                piv_y, ang, None if clip is None else (clip + PAD) * k)
        return dx, dy


# --------------------------------------------------------------------------- a clip


class ClipRenderer:
    """Draws the frames of one clip."""

    def __init__(self, clip: EvalClip, cutouts: dict[str, ms.Cutout],
                 textures: dict[str, Image], scale: float = 1.0) -> None:
        self.clip = clip
        self.k = scale
        self.lay = clip.geom
        rng = np.random.default_rng(clip.seed)
        self.rng = rng
        tint = rng.uniform(0.95, 1.04, 3)
        self.background = ms.build_background(
            self.lay, rng, textures, wall="wall", floor="floor",
            wall_color=tuple(np.array((196, 212, 222)) * tint),
            floor_color=tuple(np.array((112, 108, 100)) * rng.uniform(0.9, 1.1, 3)))
        self.props = ms.build_props(self.lay, rng)
        self.cover_tex = ms.make_cover_texture(rng)
        if scale != 1:  # the room's surfaces and furniture are drawn, not photographed:
            self.background = _upscale(self.background, scale)  # smooth upscales are fine
            self.props = [ms.Sprite(p.depth, _upscale(p.rgb, scale), _upscale(p.alpha, scale),
                                    round(p.x0 * scale), round(p.y0 * scale)) for p in self.props]
            self.cover_tex = _upscale(self.cover_tex, scale)
        self.people = EvalPeople(cutouts, person_srcs(), scale)
        self.phases = {m.name: m.phase for m in clip.movers()}
        self.sprites: dict[tuple[str, str, str, str], tuple[Image, Image]] = {}
        self.phone_photos: dict[str, dict[str, Image]] = {"front": {}, "back": {}}
        for key, ph in sorted(srcs.PHONES.items()):
            if srcs.half_of(key) == clip.half:
                self.phone_photos[ph.side][key] = phone_photo(key, load_photo(ph.photo))
        self.label = f"KB{clip.seed % 1000:03d} CAM1"
        self.clock = 3600 * int(rng.integers(0, 6)) + 60 * int(rng.integers(0, 60))

    def sprite(self, obj: str, face: str, color: str, n: int = 0) -> tuple[Image, Image]:
        """A cached sprite of a held thing; phones use this half's phone photos (the
        ``n``-th of the side seen), where there are any."""
        photos = self.phone_photos["front" if face == "front" else "back"] if obj == "phone" else {}
        key = sorted(photos)[n % len(photos)] if photos else ""
        k = (obj, face, color, key)
        if k not in self.sprites:
            self.sprites[k] = object_sprite(obj, face, color, self.rng,
                                            photos[key] if key else None)
        return self.sprites[k]

    def put(self, canvas: Image, rgb: Image, alpha: Image, cx: float, cy: float, w: float,
            h: float, ang: float = 0.0, squash: float = 1.0) -> None:
        """:func:`place` at this renderer's scale (arguments in view pixels)."""
        place(canvas, rgb, alpha, cx, cy, w, h, ang, squash, self.k)

    def owner(self, st: Frame, seat: str) -> Person | None:
        """The evaluator of ``seat`` in this frame."""
        return next((p for p in st.people if p.home == seat), None)

    def draw_held(self, canvas: Image, st: Frame, h: Handheld, u: float, sway: tuple[float, float],
                  ) -> None:
        """A phone or other thing held / lying on the desk, with the hand(s) holding it."""
        lay = self.lay
        s = lay.seat(h.seat)
        owner = self.owner(st, h.seat)
        if owner is None:
            return
        top, height, _ = self.people.figure(owner, lay)
        skin = self.people.persons[owner.source].skin
        hh, ww = SIZES[h.obj]
        ph_h, ph_w = hh * height * h.size, ww * height * h.size
        side = -1 if s.cx < WIDTH / 2 else 1  # the hand nearer the room's centre holds it
        side = -side
        dx, dy = sway
        x0, y0 = owner.x + PAD + dx, top + PAD + dy
        hx = self.people.head_x(owner, height) + PAD + dx
        desk_y = s.desk_top + PAD + lay.desk_depth * s.scale * 0.45
        wob = math.sin(st.t * 3.1 + s.cx) * 0.6
        if h.style == "desk":
            px, py = x0 + side * 0.2 * height, desk_y
            rgb, a = self.sprite(h.obj, "front" if h.obj == "phone" else "back", h.color,
                                 self.clip.phones.index(h) if h.obj == "phone" else 0)
            squash = 0.45 if h.obj in ("phone", "calculator", "wallet") else 1.0
            self.put(canvas, rgb, a, px, py, ph_w, ph_h, ang=side * 20, squash=squash)
            if u < 1.0:  # the hand putting it down / picking it up
                hand = (px + side * 0.02 * height, py - 0.02 * height * (1 - u))
                self.people.arm(canvas, owner, height, hand,
                                (x0 + side * 0.12 * height, s.desk_top + PAD - 0.06 * height))
                hr, ha = hand_sprite(int(0.07 * height * self.k), int(0.06 * height * self.k), skin)
                self.put(canvas, hr, ha, *hand, 0.05 * height, 0.06 * height, ang=side * 30)
            return
        if h.style == "face":
            if h.obj == "phone":  # at the ear
                hold = (hx + side * 0.06 * height, y0 + 0.1 * height)
                face, ang = "edge", side * 12.0
            else:  # in front of the chin / at the mouth
                hold = (hx + side * 0.02 * height, y0 + 0.16 * height)
                face, ang = "back", side * 8.0
        else:  # desk height, in front of the chest
            hold = (x0 + side * 0.06 * height, s.desk_top + PAD - 0.05 * height)
            face = "front" if h.style == "screen" else "back"
            ang = side * (10 + 4 * math.sin(st.t * 0.9))
        start = (x0 + side * 0.18 * height, desk_y)
        px = start[0] + (hold[0] - start[0]) * u + wob
        py = start[1] + (hold[1] - start[1]) * u
        n = self.clip.phones.index(h) if h.obj == "phone" else 0
        rgb, a = self.sprite(h.obj, face, h.color if h.obj == "phone" else "black", n)
        squash = 0.62 if (h.style == "hands" and h.obj in ("phone", "calculator")) else 1.0
        pw = ph_w * (0.55 if face == "edge" else 1.0)
        hand_w, hand_h = 0.05 * height, 0.06 * height
        hr, ha = hand_sprite(max(4, int(hand_h * 2 * self.k)), max(4, int(hand_w * 2 * self.k)), skin)
        if h.style in ("hands", "screen"):
            # two hands gripping the lower corners, thumbs over the edge
            self.put(canvas, rgb, a, px, py, pw, ph_h, ang=ang, squash=squash)
            for k in (-1, 1):
                self.put(canvas, hr, ha, px + k * pw * 0.45, py + ph_h * squash * 0.28,
                      hand_w * 0.8, hand_h * 0.9, ang=ang - k * 35)
            return
        if h.style == "covered":
            self.put(canvas, rgb, a, px, py, pw, ph_h, ang=ang)
            # the other hand over the upper 30-50 % of it (fingers across the face)
            cover = (px + side * pw * 0.1, py - ph_h * 0.28)
            self.put(canvas, hr, ha, *cover, hand_w * 1.25, ph_h * 0.48, ang=ang + 90 * side)
            return
        # held in one hand: the hand behind the lower half, fingers around
        if h.style == "face":  # the forearm up from the elbow at the body's side
            self.people.arm(canvas, owner, height, (px, py + ph_h * 0.3),
                            (hx + side * 0.1 * height, y0 + 0.33 * height))
        self.put(canvas, hr, ha, px, py + ph_h * 0.18, hand_w, hand_h, ang=ang)
        self.put(canvas, rgb, a, px, py, pw, ph_h, ang=ang)
        thumb_r, thumb_a = hand_sprite(max(4, int(hand_h * self.k)), max(4, int(hand_w * 0.5 * self.k)),
                                       skin, 1)
        self.put(canvas, thumb_r, thumb_a, px - side * pw * 0.4, py + ph_h * 0.08, hand_w * 0.3,
              hand_h * 0.55, ang=ang + side * 20)

    def draw_activity(self, canvas: Image, st: Frame, p: Person, sway: tuple[float, float]) -> None:
        """Writing or page turning hands of a seated evaluator."""
        for act in self.clip.activities:
            if act.seat != p.home or not act.start <= st.t < act.end or act.kind == "lean":
                continue
            s = self.lay.seat(act.seat)
            _, height, _ = self.people.figure(p, self.lay)
            skin = self.people.persons[p.source].skin
            y = s.desk_top + PAD + self.lay.desk_depth * s.scale * 0.35
            x = p.x + PAD + sway[0] + 0.05 * height
            u = (st.t - act.start) / (act.end - act.start)
            if act.kind == "write":
                x += 0.04 * height * math.sin(st.t * 2.3) + 0.02 * height * math.sin(st.t * 11)
                y += 0.01 * height * math.sin(st.t * 7)
                self.people.arm(canvas, p, height, (x + 0.02 * height, y),
                                (x + 0.06 * height, y - 0.07 * height))
                hr, ha = hand_sprite(int(0.14 * height * self.k), int(0.14 * height * self.k), skin)
                self.put(canvas, hr, ha, x, y - 0.01 * height, 0.06 * height, 0.055 * height, ang=-70)
                k = self.k
                cv2.line(canvas, (int((x - 0.02 * height) * k), int(y * k)),
                         (int((x - 0.045 * height) * k), int((y + 0.01 * height) * k)),
                         (40, 40, 140), max(1, int(height * k / 200)), cv2.LINE_AA)
            else:  # a sheet lifted and laid over
                lift = math.sin(math.pi * min(1.0, (u * 3) % 1.0))
                sw, shh = 0.14 * height, 0.09 * height * (0.3 + 0.7 * lift)
                sheet = np.full((8, 8, 3), 236, np.float32)
                self.put(canvas, sheet, np.ones((8, 8), np.float32), x - 0.02 * height,
                      y - shh / 2 + 0.01 * height, sw, shh, ang=-8)
                hr, ha = hand_sprite(int(0.14 * height * self.k), int(0.14 * height * self.k), skin)
                self.put(canvas, hr, ha, x + sw * 0.4, y - shh + 0.01 * height, 0.055 * height,
                      0.05 * height, ang=-40)

    def lean(self, p: Person, t: float) -> float:
        """Extra lean (degrees) of an evaluator leaning toward the neighbour / over the desk."""
        for act in self.clip.activities:
            if act.kind == "lean" and act.seat == p.home and act.start <= t < act.end:
                u = min(1.0, (t - act.start) / 1.2, (act.end - t) / 1.2)
                return 9.0 * max(0.0, u) * (1 if p.x < WIDTH / 2 else -1)
        return 0.0

    def render(self, st: Frame) -> Image:
        """One frame (uint8 BGR, 640x480)."""
        lay = self.lay
        canvas = self.background.copy()
        items: list[tuple[float, int, object]] = [(p.depth, i, p) for i, p in enumerate(self.props)]
        for j, p in enumerate(st.people):
            items.append((p.g, 1000 + j, p))
        for k, (h, u) in enumerate(st.held):
            items.append((lay.seat(h.seat).desk_front + 0.7, 2000 + k, (h, u)))
        items.sort(key=lambda it: (it[0], it[1]))
        sway: dict[str | None, tuple[float, float]] = {}
        for _, _, obj in items:
            if isinstance(obj, ms.Sprite):
                blend(canvas, obj.rgb, obj.alpha, int(obj.x0), int(obj.y0))
            elif isinstance(obj, Person):
                d = self.people.draw_person(canvas, obj, st.t, self.phases[obj.actor], lay,
                                            self.lean(obj, st.t))
                if obj.home is not None:
                    sway[obj.home] = d
            else:
                h, u = obj  # type: ignore[misc]
                self.draw_held(canvas, st, h, u, sway.get(h.seat, (0.0, 0.0)))
        for p in st.people:  # writing hands go over the desk, under the held things
            if p.home is not None and p.seated > 0.99 and p.desk == p.home:
                self.draw_activity(canvas, st, p, sway.get(p.home, (0.0, 0.0)))
        noise = 1.6 + 4.4 * (1.0 - st.light)
        if self.k == 1:
            frame = ms.camera_view(canvas, st, self.rng, self.cover_tex, gain=st.light,  # type: ignore[arg-type]
                                   noise_sigma=noise)
            ms.osd(frame, st.t + self.clock, self.label)
        else:
            frame = camera_view_k(canvas, st, self.rng, self.cover_tex, st.light, noise, self.k)
            osd_k(frame, st.t + self.clock, self.label, self.k)
        return frame


def encoder_options(clip: EvalClip, scale: float = 1.0) -> dict[str, str] | None:
    """x264 settings: the demo's CRF, or the agent's archive rate control at 200 kbps
    (times ``scale`` squared: the same bits per pixel at a higher resolution)."""
    if not clip.bitrate_kbps:
        return None
    from capture.live_encoder import x264_options  # the archive's own settings

    kbps = round(clip.bitrate_kbps * scale * scale)
    opts = x264_options(preset="veryfast", gop=2 * FPS, crf=26, kbps=kbps)
    return {**opts, "threads": "1"}


def render_clip(clip: EvalClip, cutouts: dict[str, ms.Cutout], textures: dict[str, Image],
                out_dir: Path, n_frames: int | None = None, scale: float = 1.0) -> Path:
    """Render one clip to ``out_dir/<clip>.mp4``; write its room and truth files beside it.

    ``scale``: render at ``scale`` times 640x480 (people and phones are cut and drawn at
    that resolution; see ``--scale``)."""
    r = ClipRenderer(clip, cutouts, textures, scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{clip.clip}.mp4"
    enc = ms.H264Writer(path, encoder_options(clip, scale))
    if scale != 1:
        enc.stream.width, enc.stream.height = frame_size(scale)
    last: Image | None = None
    for st in frames(clip, n_frames):
        if st.tamper.frozen and last is not None:
            frame = last
        else:
            frame = r.render(st)
            last = frame
        enc.write(frame, st.index)
    enc.close()
    if n_frames is None:
        write_docs(clip, out_dir, scale)
    return path


def write_stills(clip: EvalClip, cutouts: dict[str, ms.Cutout], textures: dict[str, Image],
                 out_dir: Path, times: list[float], scale: float = 1.0) -> None:
    """PNGs of single frames (``<clip>_<t>.png``) for a quick look."""
    r = ClipRenderer(clip, cutouts, textures, scale)
    states = frames(clip)
    out_dir.mkdir(parents=True, exist_ok=True)
    for t in times:
        st = states[min(len(states) - 1, round(t * FPS))]
        cv2.imwrite(str(out_dir / f"{clip.clip}_{t:05.1f}.png"), r.render(st))


def write_docs(clip: EvalClip, out_dir: Path, scale: float = 1.0) -> None:
    """The clip's room and truth files (the polygons are normalised: only the camera's size
    and, off the committed folders, its source path depend on ``scale`` / ``out_dir``)."""
    room = eval_room_doc(clip)
    if scale != 1:
        cam = room["cameras"][0]  # type: ignore[index]
        cam["width"], cam["height"] = frame_size(scale)
        cam["source"] = str(out_dir / f"{clip.clip}.mp4")
    (out_dir / f"{clip.clip}.room.yaml").write_text(
        yaml.safe_dump(room, allow_unicode=True, sort_keys=False,
                       default_flow_style=None), encoding="utf-8")
    (out_dir / f"{clip.clip}.truth.json").write_text(
        json.dumps(truth_doc(clip), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_textures(half: str) -> dict[str, Image]:
    """Wall and floor textures of one half."""
    wall, floor = srcs.TEXTURES[half]
    return {"wall": load_photo(wall), "floor": load_photo(floor)}


def _event_text(e: dict) -> str:
    if e["rule"] == "camera_tamper":
        return f"tamper {e['kind']} {e['start_s']:g}–{e['end_s']:g}"
    style = e["variation"][0].split("_", 1)[1] if e["rule"] != "seat_empty" else ""
    return f"{e['rule']} {style} {e['seat']} {e['start_s']:g}–{e['end_s']:g}".replace("  ", " ")


def summary() -> str:
    """Markdown table of the clips (for the README)."""
    rows = ["| clip | layout | s | kbps | light | incidents (seat, s) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for c in CLIPS:
        doc = truth_doc(c)
        negs = [str(t).removeprefix("neg_") for t in doc["variations"]  # type: ignore[attr-defined]
                if str(t).startswith("neg_")]
        evs = "; ".join(_event_text(e) for e in doc["events"]) or f"none: control ({', '.join(negs)})"  # type: ignore[attr-defined]
        light = ("dim" if c.dims == [(0.0, c.duration)] else
                 "dim " + ", ".join(f"{a:g}–{b:g}" for a, b in c.dims) if c.dims else "")
        rows.append(f"| {c.half}/{c.clip} | {c.layout} | {doc['duration_s']:g} | "
                    f"{c.bitrate_kbps or 'CRF'} | {light} | {evs} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder (default: evalset/<half>)")
    ap.add_argument("--only", action="append", help="clip stem(s), e.g. dev_01")
    ap.add_argument("--frames", type=int, default=None, help="render only the first N frames")
    ap.add_argument("--still", type=float, action="append",
                    help="write a PNG of the frame at this time (s) instead of the clip")
    ap.add_argument("--docs-only", action="store_true", help="write room/truth files only")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="render at SCALE x 640x480 (e.g. 2: 1280x960, the people and phones "
                         "drawn from the photos at that resolution; needs --out)")
    ap.add_argument("--digests", action="store_true", help="print source sha256 and exit")
    ap.add_argument("--fetch", action="store_true", help="print the commands that get the sources")
    ap.add_argument("--summary", action="store_true", help="print the README's table of clips")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary())
        return 0
    if args.fetch:
        for cmd in dict.fromkeys(p.fetch for p in srcs.PHOTOS.values()):
            print(cmd)
        return 0
    if args.scale != 1 and args.out is None:
        ap.error("--scale needs --out (the committed clips are 640x480)")
    if not 0.5 <= args.scale <= 4:
        ap.error("--scale must be within 0.5..4")
    try:
        if args.digests:
            for k in srcs.PHOTOS:
                print(f"{hashlib.sha256(read_photo(k)).hexdigest()}  {k}")
            return 0
        todo = [c for c in CLIPS if not args.only or c.clip in args.only]
        for clip in todo:
            out = args.out or HERE / clip.half
            if args.docs_only:
                out.mkdir(parents=True, exist_ok=True)
                write_docs(clip, out, args.scale)
                continue
            t0 = time.monotonic()
            keys = {m.source for m in clip.movers()}
            if args.still:
                write_stills(clip, load_cutouts(keys), load_textures(clip.half), out, args.still,
                             args.scale)
                continue
            path = render_clip(clip, load_cutouts(keys), load_textures(clip.half), out, args.frames,
                               args.scale)
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB  {time.monotonic() - t0:.0f} s",
                  flush=True)
    except MissingSource as exc:
        print(f"evalset: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
