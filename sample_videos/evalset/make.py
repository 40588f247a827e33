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
        stem = ph.package.replace("-", "[-_]") if ph.registry == "pypi" else ph.package
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
    """A source photo decoded to BGR uint8."""
    img = cv2.imdecode(np.frombuffer(read_photo(key), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MissingSource(f"could not decode source {key}")
    return img


def person_srcs() -> dict[str, ms.PersonSrc]:
    """The people of :data:`sources.PEOPLE` as the demo renderer's PersonSrc."""
    return {k: ms.PersonSrc(p.photo, p.box, p.body_frac, p.full_body, p.skin, p.flip, p.size)
            for k, p in srcs.PEOPLE.items()}


def load_cutouts(keys: set[str] | None = None) -> dict[str, ms.Cutout]:
    """Person cut-outs (all, or those in ``keys``)."""
    imgs: dict[str, Image] = {}
    out = {}
    for key, src in person_srcs().items():
        if keys is not None and key not in keys:
            continue
        if src.file not in imgs:
            imgs[src.file] = load_photo(src.file)
        out[key] = ms.make_cutout(imgs[src.file], src)
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


def object_sprite(obj: str, face: str, color: str, rng: np.random.Generator) -> tuple[Image, Image]:
    """A held thing at 4x resolution (rgb float32, alpha): ``face`` is ``front``, ``back``
    or ``edge`` (a phone seen from the side)."""
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
        if face == "front":
            img = _phone_photo(color, H, W, rng) if srcs.PHONES else None
            if img is not None:
                return img, a
            bz = max(2, W // 14)
            scr = np.empty((H - 4 * bz, W - 2 * bz, 3), np.float32)
            hue = rng.uniform(0, 180)
            top = cv2.cvtColor(np.uint8([[[hue, 160, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
            scr[:] = top
            scr *= np.linspace(1.0, 0.55, scr.shape[0], dtype=np.float32)[:, None, None]
            for r in range(5):
                for c in range(4):
                    col = cv2.cvtColor(np.uint8([[[rng.uniform(0, 180), 200, 240]]]),
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


def _phone_photo(color: str, h: int, w: int, rng: np.random.Generator) -> Image | None:
    """The screen side of a photographed phone (when the sources have one)."""
    return None


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
          ang: float = 0.0, squash: float = 1.0) -> None:
    """Blend a sprite scaled to ``w`` x ``h`` px, rotated by ``ang`` degrees, then squashed
    vertically by ``squash`` (a surface seen at a slant), centred at canvas ``(cx, cy)``."""
    sh, sw = alpha.shape
    m = np.float64([[w / sw, 0, 0], [0, h / sh, 0]])
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


# --------------------------------------------------------------------------- people


class EvalPeople(ms.PersonRenderer):
    """The demo's person renderer with visitors behind, leaning in and crouching."""

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

    def draw_person(self, canvas: Image, p: Person, t: float, phase: float, lay: ms.Layout,
                    lean: float = 0.0) -> tuple[float, float]:
        """Composite one person; returns the (dx, dy) of their sway (for what they hold)."""
        src = self.persons[p.source]
        top, height, clip = self.figure(p, lay)
        rgb, a = self.scaled(p.source, max(8, round(src.body_frac * height)))
        if clip is not None:
            a = a.copy()
            a[max(0, round(clip - top)):] = 0
        dx, dy, ang = ms.body_motion(p.moving, t, phase, height)
        ang += p.lean - lean
        dy += abs(lean) * 0.004 * height
        bent = p.seated > 0.5 or p.lean != 0
        piv_y = min(a.shape[0] - 1, 0.55 * height) if bent else a.shape[0] - 1
        ms.composite_figure(canvas, rgb, a, p.x + PAD + dx, top + PAD + dy, piv_y, ang,
                            None if clip is None else clip + PAD)
        return dx, dy


# --------------------------------------------------------------------------- a clip


class ClipRenderer:
    """Draws the frames of one clip."""

    def __init__(self, clip: EvalClip, cutouts: dict[str, ms.Cutout],
                 textures: dict[str, Image]) -> None:
        self.clip = clip
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
        self.people = EvalPeople(cutouts, person_srcs())
        self.phases = {m.name: m.phase for m in clip.movers()}
        self.sprites: dict[tuple[str, str, str], tuple[Image, Image]] = {}
        self.label = f"KB{clip.seed % 1000:03d} CAM1"
        self.clock = 3600 * int(rng.integers(0, 6)) + 60 * int(rng.integers(0, 60))

    def sprite(self, obj: str, face: str, color: str) -> tuple[Image, Image]:
        """A cached sprite of a held thing."""
        k = (obj, face, color)
        if k not in self.sprites:
            self.sprites[k] = object_sprite(obj, face, color, self.rng)
        return self.sprites[k]

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
        desk_y = s.desk_top + PAD + lay.desk_depth * s.scale * 0.45
        wob = math.sin(st.t * 3.1 + s.cx) * 0.6
        if h.style == "desk":
            px, py = x0 + side * 0.2 * height, desk_y
            rgb, a = self.sprite(h.obj, "front" if h.obj == "phone" else "back", h.color)
            squash = 0.45 if h.obj in ("phone", "calculator", "wallet") else 1.0
            place(canvas, rgb, a, px, py, ph_w, ph_h, ang=side * 20, squash=squash)
            if u < 1.0:  # the hand putting it down / picking it up
                hr, ha = hand_sprite(int(0.07 * height), int(0.06 * height), skin)
                place(canvas, hr, ha, px + side * 0.02 * height, py - 0.02 * height * (1 - u),
                      0.06 * height, 0.07 * height, ang=side * 30)
            return
        if h.style == "face":
            if h.obj == "phone":  # at the ear
                hold = (x0 + side * 0.085 * height, y0 + 0.11 * height)
                face, ang = "edge", side * 12.0
            else:  # in front of the chin / at the mouth
                hold = (x0 + side * 0.035 * height, y0 + 0.17 * height)
                face, ang = "back", side * 8.0
        else:  # desk height, in front of the chest
            hold = (x0 + side * 0.06 * height, s.desk_top + PAD - 0.05 * height)
            face = "front" if h.style == "screen" else "back"
            ang = side * (10 + 4 * math.sin(st.t * 0.9))
        start = (x0 + side * 0.18 * height, desk_y)
        px = start[0] + (hold[0] - start[0]) * u + wob
        py = start[1] + (hold[1] - start[1]) * u
        rgb, a = self.sprite(h.obj, face, h.color if h.obj == "phone" else "black")
        squash = 0.62 if (h.style == "hands" and h.obj in ("phone", "calculator")) else 1.0
        pw = ph_w * (0.55 if face == "edge" else 1.0)
        hand_w, hand_h = 0.05 * height, 0.06 * height
        hr, ha = hand_sprite(max(4, int(hand_h * 2)), max(4, int(hand_w * 2)), skin)
        if h.style in ("hands", "screen"):
            # two hands gripping the lower corners, thumbs over the edge
            place(canvas, rgb, a, px, py, pw, ph_h, ang=ang, squash=squash)
            for k in (-1, 1):
                place(canvas, hr, ha, px + k * pw * 0.45, py + ph_h * squash * 0.28,
                      hand_w * 0.8, hand_h * 0.9, ang=ang - k * 35)
            return
        if h.style == "covered":
            place(canvas, rgb, a, px, py, pw, ph_h, ang=ang)
            # a hand over the upper 30-50 % of it (fingers across the face)
            place(canvas, hr, ha, px + side * pw * 0.1, py - ph_h * 0.28, hand_w * 1.25,
                  ph_h * 0.48, ang=ang + 90 * side)
            return
        # held in one hand: the hand behind the lower half, fingers around
        place(canvas, hr, ha, px, py + ph_h * 0.18, hand_w, hand_h, ang=ang)
        place(canvas, rgb, a, px, py, pw, ph_h, ang=ang)
        thumb_r, thumb_a = hand_sprite(max(4, int(hand_h)), max(4, int(hand_w * 0.5)), skin, 1)
        place(canvas, thumb_r, thumb_a, px - side * pw * 0.4, py + ph_h * 0.08, hand_w * 0.3,
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
                hr, ha = hand_sprite(int(0.14 * height), int(0.14 * height), skin)
                place(canvas, hr, ha, x, y - 0.01 * height, 0.06 * height, 0.055 * height, ang=-70)
                cv2.line(canvas, (int(x - 0.02 * height), int(y)), (int(x - 0.045 * height),
                         int(y + 0.01 * height)), (40, 40, 140), max(1, int(height / 200)), cv2.LINE_AA)
            else:  # a sheet lifted and laid over
                lift = math.sin(math.pi * min(1.0, (u * 3) % 1.0))
                sw, shh = 0.14 * height, 0.09 * height * (0.3 + 0.7 * lift)
                sheet = np.full((8, 8, 3), 236, np.float32)
                place(canvas, sheet, np.ones((8, 8), np.float32), x - 0.02 * height,
                      y - shh / 2 + 0.01 * height, sw, shh, ang=-8)
                hr, ha = hand_sprite(int(0.14 * height), int(0.14 * height), skin)
                place(canvas, hr, ha, x + sw * 0.4, y - shh + 0.01 * height, 0.055 * height,
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
        frame = ms.camera_view(canvas, st, self.rng, self.cover_tex, gain=st.light,  # type: ignore[arg-type]
                               noise_sigma=noise)
        ms.osd(frame, st.t + self.clock, self.label)
        return frame


def encoder_options(clip: EvalClip) -> dict[str, str] | None:
    """x264 settings: the demo's CRF, or the agent's archive rate control at 200 kbps."""
    if not clip.bitrate_kbps:
        return None
    from capture.live_encoder import x264_options  # the archive's own settings

    opts = x264_options(preset="veryfast", gop=2 * FPS, crf=26, kbps=clip.bitrate_kbps)
    return {**opts, "threads": "1"}


def render_clip(clip: EvalClip, cutouts: dict[str, ms.Cutout], textures: dict[str, Image],
                out_dir: Path, n_frames: int | None = None) -> Path:
    """Render one clip to ``out_dir/<clip>.mp4``; write its room and truth files beside it."""
    r = ClipRenderer(clip, cutouts, textures)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{clip.clip}.mp4"
    enc = ms.H264Writer(path, encoder_options(clip))
    last: Image | None = None
    for st in frames(clip, n_frames):
        if st.tamper.frozen and last is not None:  # type: ignore[attr-defined]
            frame = last
        else:
            frame = r.render(st)
            last = frame
        enc.write(frame, st.index)
    enc.close()
    if n_frames is None:
        write_docs(clip, out_dir)
    return path


def write_stills(clip: EvalClip, cutouts: dict[str, ms.Cutout], textures: dict[str, Image],
                 out_dir: Path, times: list[float]) -> None:
    """PNGs of single frames (``<clip>_<t>.png``) for a quick look."""
    r = ClipRenderer(clip, cutouts, textures)
    states = frames(clip)
    out_dir.mkdir(parents=True, exist_ok=True)
    for t in times:
        st = states[min(len(states) - 1, round(t * FPS))]
        cv2.imwrite(str(out_dir / f"{clip.clip}_{t:05.1f}.png"), r.render(st))


def write_docs(clip: EvalClip, out_dir: Path) -> None:
    """The clip's room and truth files."""
    (out_dir / f"{clip.clip}.room.yaml").write_text(
        yaml.safe_dump(eval_room_doc(clip), allow_unicode=True, sort_keys=False,
                       default_flow_style=None), encoding="utf-8")
    (out_dir / f"{clip.clip}.truth.json").write_text(
        json.dumps(truth_doc(clip), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_textures(half: str) -> dict[str, Image]:
    """Wall and floor textures of one half."""
    wall, floor = srcs.TEXTURES[half]
    return {"wall": load_photo(wall), "floor": load_photo(floor)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder (default: evalset/<half>)")
    ap.add_argument("--only", action="append", help="clip stem(s), e.g. dev_01")
    ap.add_argument("--frames", type=int, default=None, help="render only the first N frames")
    ap.add_argument("--still", type=float, action="append",
                    help="write a PNG of the frame at this time (s) instead of the clip")
    ap.add_argument("--docs-only", action="store_true", help="write room/truth files only")
    ap.add_argument("--digests", action="store_true", help="print source sha256 and exit")
    ap.add_argument("--fetch", action="store_true", help="print the commands that get the sources")
    args = ap.parse_args(argv)
    if args.fetch:
        for cmd in dict.fromkeys(p.fetch for p in srcs.PHOTOS.values()):
            print(cmd)
        return 0
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
                write_docs(clip, out)
                continue
            t0 = time.monotonic()
            keys = {m.source for m in clip.movers()}
            if args.still:
                write_stills(clip, load_cutouts(keys), load_textures(clip.half), out, args.still)
                continue
            path = render_clip(clip, load_cutouts(keys), load_textures(clip.half), out, args.frames)
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB  {time.monotonic() - t0:.0f} s",
                  flush=True)
    except MissingSource as exc:
        print(f"evalset: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
