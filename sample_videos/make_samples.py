"""Render the evalwatch sample clips from real photographs.

Usage (dev only; the rendered clips are committed)::

    pip download --no-deps ultralytics -d /tmp/ul      # bus.jpg, zidane.jpg
    pip install scikit-image                            # astronaut.png, textures
    python -m sample_videos.make_samples [--only room_a] [--out sample_videos]

People are cut out of real photos (GrabCut seeded by a hand-placed ellipse,
feathered), scaled to the perspective of a high front camera, and composited
into a room of desks, chairs and frosted partitions.  Everything that happens
(who sits where, who walks in, phones, camera tampering) comes from
:mod:`sample_videos.script`, which also produces the ground truth.  Output is
deterministic for a given set of sources and library versions.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import math
import os
import sys
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sample_videos.script import (
    CLIPS,
    FPS,
    HEIGHT,
    WIDTH,
    ClipSpec,
    FrameState,
    Layout,
    PersonState,
    SeatGeom,
    frame_states,
    room_doc,
    truth_doc,
)

HERE = Path(__file__).resolve().parent
PAD = 170  #: the world canvas extends this far around the view (for the "moved" tamper)
CW, CH = WIDTH + 2 * PAD, HEIGHT + 2 * PAD
CRF = "30"
START_CLOCK = (9, 30, 0)  #: wall-clock time shown by the OSD at t=0

Image = np.ndarray


# --------------------------------------------------------------------------- sources


class MissingSource(RuntimeError):
    """A source image is not installed; the message says which package to get."""


def _ultralytics_asset(name: str) -> bytes:
    """Bytes of ``ultralytics/assets/<name>`` from an installed package or a wheel."""
    spec = importlib.util.find_spec("ultralytics")
    if spec and spec.submodule_search_locations:
        p = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
        if p.exists():
            return p.read_bytes()
    wheels = [os.environ.get("EVALWATCH_ULTRALYTICS_WHEEL", "")]
    wheels += sorted(glob.glob("/tmp/ul/ultralytics-*.whl"))  # noqa: S108 (dev-time download dir)
    wheels += sorted(glob.glob(str(Path.home() / ".cache/evalwatch/ultralytics-*.whl")))
    for w in wheels:
        if w and Path(w).is_file():
            with zipfile.ZipFile(w) as zf:
                return zf.read(f"ultralytics/assets/{name}")
    raise MissingSource(
        f"missing source ultralytics/assets/{name} (package 'ultralytics'): run "
        "`pip download --no-deps ultralytics -d /tmp/ul` (no install needed) or set "
        "EVALWATCH_ULTRALYTICS_WHEEL to the wheel's path")


def _skimage_data(name: str) -> bytes:
    """Bytes of ``skimage/data/<name>`` (scikit-image's bundled sample data)."""
    spec = importlib.util.find_spec("skimage")
    if spec and spec.submodule_search_locations:
        p = Path(next(iter(spec.submodule_search_locations))) / "data" / name
        if p.exists():
            return p.read_bytes()
    raise MissingSource(
        f"missing source skimage/data/{name} (package 'scikit-image'): run "
        "`pip install scikit-image` (dev only)")


SOURCE_FILES = {
    "bus.jpg": lambda: _ultralytics_asset("bus.jpg"),
    "zidane.jpg": lambda: _ultralytics_asset("zidane.jpg"),
    "astronaut.png": lambda: _skimage_data("astronaut.png"),
    "brick.png": lambda: _skimage_data("brick.png"),
    "gravel.png": lambda: _skimage_data("gravel.png"),
}


def load_image(name: str) -> Image:
    """Decode one source file to BGR uint8."""
    data = SOURCE_FILES[name]()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MissingSource(f"could not decode source {name}")
    return img


def source_digests() -> dict[str, str]:
    """sha256 of every source file (recorded in the README for provenance)."""
    return {k: hashlib.sha256(f()).hexdigest() for k, f in SOURCE_FILES.items()}


# --------------------------------------------------------------------------- cut-outs


@dataclass(frozen=True)
class PersonSrc:
    """Where a person is in a photo and how much of a standing body the crop shows."""

    file: str
    box: tuple[int, int, int, int]  #: x1, y1, x2, y2 in the photo
    body_frac: float  #: fraction of the standing height from the head down that the crop shows
    full_body: bool
    skin: tuple[int, int, int]  #: BGR skin tone (hands holding a phone)
    flip: bool = False
    size: float = 1.0  #: height multiplier (people differ in size)


PERSONS: dict[str, PersonSrc] = {
    "bus_coat": PersonSrc("bus.jpg", (46, 392, 254, 912), 1.0, True, (120, 150, 200)),
    "bus_coat_flip": PersonSrc("bus.jpg", (46, 392, 254, 912), 1.0, True, (120, 150, 200),
                               flip=True, size=0.97),
    "bus_black": PersonSrc("bus.jpg", (214, 398, 352, 870), 1.0, True, (130, 160, 210),
                           size=1.02),
    "ancelotti": PersonSrc("zidane.jpg", (745, 35, 1135, 720), 0.62, False, (120, 150, 200)),
    "ancelotti_flip": PersonSrc("zidane.jpg", (745, 35, 1135, 720), 0.62, False,
                                (120, 150, 200), flip=True, size=0.98),
    "astronaut": PersonSrc("astronaut.png", (70, 0, 440, 512), 0.5, False, (140, 165, 215),
                           size=1.08),
    "astronaut_flip": PersonSrc("astronaut.png", (70, 0, 440, 512), 0.5, False,
                                (140, 165, 215), flip=True, size=1.05),
}


@dataclass
class Cutout:
    """A person cut out of a photo: BGR float32 and alpha (0..1) of the same size."""

    rgb: Image
    alpha: Image
    src: PersonSrc


def make_cutout(img: Image, src: PersonSrc, open_bottom: bool | None = None) -> Cutout:
    """Cut a person out with GrabCut seeded by an ellipse, then feather the mask.

    ``open_bottom`` (default: for half-body photos) says the body goes on below the
    crop: the bottom edge is not forced to background and the cut is faded out.
    """
    if open_bottom is None:
        open_bottom = not src.full_body
    x1, y1, x2, y2 = src.box
    crop = img[y1:y2, x1:x2].copy()
    k = min(1.0, 520 / crop.shape[0])
    crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    h, w = crop.shape[:2]
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    cy = h * (0.5 if src.full_body else 0.62)
    cv2.ellipse(mask, (w // 2, int(cy)), (int(w * 0.46), int(h * 0.52)), 0, 0, 360,
                cv2.GC_PR_FGD, -1)
    core = np.zeros((h, w), np.uint8)
    if src.full_body:
        cv2.ellipse(core, (w // 2, int(h * 0.45)), (int(w * 0.16), int(h * 0.36)), 0, 0, 360,
                    1, -1)
    else:
        cv2.ellipse(core, (w // 2, int(h * 0.62)), (int(w * 0.2), int(h * 0.5)), 0, 0, 360,
                    1, -1)
        cv2.ellipse(core, (w // 2, int(h * 0.25)), (int(w * 0.09), int(h * 0.13)), 0, 0, 360,
                    1, -1)
    mask[core > 0] = cv2.GC_FGD
    border = 3
    mask[:border] = cv2.GC_BGD
    mask[:, :border] = cv2.GC_BGD
    mask[:, -border:] = cv2.GC_BGD
    if not open_bottom:
        mask[-border:] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(12345)
    cv2.grabCut(crop, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]  # rect None: opencv's stubs want a rect
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    # keep the largest component and fill its holes
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
    if n > 1:
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = (lab == big).astype(np.uint8)
    inv = (1 - fg).astype(np.uint8)
    ff = inv.copy()
    cv2.floodFill(ff, np.zeros((h + 2, w + 2), np.uint8), (0, 0), 2)
    fg[ff == 1] = 1
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.6)
    if open_bottom:  # soft fade at the cut under the waist (hidden by the desk anyway)
        ramp = np.clip((h - 1 - np.arange(h)) / (0.05 * h), 0, 1).astype(np.float32)
        alpha *= ramp[:, None]
    rgb = crop.astype(np.float32)
    if src.flip:
        rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
    return Cutout(rgb, np.clip(alpha, 0, 1), src)


def load_cutouts() -> dict[str, Cutout]:
    """All person cut-outs, keyed like :data:`PERSONS`."""
    imgs: dict[str, Image] = {}
    out = {}
    for key, src in PERSONS.items():
        if src.file not in imgs:
            imgs[src.file] = load_image(src.file)
        out[key] = make_cutout(imgs[src.file], src)
    return out


# --------------------------------------------------------------------------- compositing


def blend(dst: Image, rgb: Image, alpha: Image, x0: int, y0: int) -> None:
    """Alpha-blend a float sprite onto a uint8 canvas in place (clipped)."""
    h, w = alpha.shape
    ax0, ay0 = max(0, -x0), max(0, -y0)
    ax1, ay1 = min(w, dst.shape[1] - x0), min(h, dst.shape[0] - y0)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    region = dst[y0 + ay0:y0 + ay1, x0 + ax0:x0 + ax1].astype(np.float32)
    a = alpha[ay0:ay1, ax0:ax1, None]
    region += (rgb[ay0:ay1, ax0:ax1] - region) * a
    dst[y0 + ay0:y0 + ay1, x0 + ax0:x0 + ax1] = np.clip(region, 0, 255).astype(np.uint8)


def poly_sprite(pts: np.ndarray, color: tuple[float, float, float],
                texture: Image | None = None, alpha: float = 1.0,
                ) -> tuple[Image, Image, int, int]:
    """A filled anti-aliased polygon as (rgb, alpha, x0, y0) in canvas coords."""
    x0, y0 = np.floor(pts.min(0)).astype(int) - 2
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    h, w = y1 - y0, x1 - x0
    m = np.zeros((h * 4, w * 4), np.uint8)
    cv2.fillPoly(m, [np.round((pts - [x0, y0]) * 4).astype(np.int32)], 255, cv2.LINE_AA)
    a = cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 * alpha
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = color
    if texture is not None:
        rgb *= texture[:h, :w, None] if texture.ndim == 2 else texture[:h, :w]
    return rgb, a, int(x0), int(y0)


def _tile(tex: Image, h: int, w: int) -> Image:
    reps = (h // tex.shape[0] + 1, w // tex.shape[1] + 1) + ((1,) if tex.ndim == 3 else ())
    return np.tile(tex, reps)[:h, :w]


# --------------------------------------------------------------------------- the room


@dataclass
class Sprite:
    """A static prop drawn in depth order."""

    depth: float
    rgb: Image
    alpha: Image
    x0: int
    y0: int


def build_background(lay: Layout, rng: np.random.Generator, textures: dict[str, Image],
                     wall: str = "brick.png", floor: str = "gravel.png",
                     wall_color: tuple[float, float, float] = (196, 214, 222),
                     floor_color: tuple[float, float, float] = (118, 112, 100)) -> Image:
    """Wall, floor and wall fittings on the world canvas (uint8 BGR).

    ``wall`` and ``floor`` name the textures (keys of ``textures``) that modulate the
    plain ``wall_color`` paint and ``floor_color`` carpet.
    """
    wall_y = int(lay.wall_y + PAD)
    canvas = np.zeros((CH, CW, 3), np.float32)
    brick: Image = textures[wall].astype(np.float32)
    brick = cv2.GaussianBlur(cv2.cvtColor(brick, cv2.COLOR_BGR2GRAY), (0, 0), 1.2)
    wall_tex = 0.93 + 0.07 * (brick - brick.mean()) / (brick.std() + 1e-6) / 2.5
    paint = _tile(wall_tex, CH, CW)[..., None] * np.array(wall_color, np.float32)
    canvas[:wall_y] = paint[:wall_y]
    gravel: Image = textures[floor].astype(np.float32)
    gravel = cv2.GaussianBlur(cv2.cvtColor(gravel, cv2.COLOR_BGR2GRAY), (0, 0), 2.5)
    carpet = 1.0 + 0.045 * (gravel - gravel.mean()) / (gravel.std() + 1e-6)
    carpet_rgb = _tile(carpet, CH, CW)[..., None] * np.array(floor_color, np.float32)
    canvas[wall_y:] = carpet_rgb[wall_y:]
    # carpet tile seams converging on a vanishing point above the frame
    vx, vy = PAD + WIDTH / 2, wall_y - 420
    seam = np.zeros((CH, CW), np.float32)
    for k in range(-14, 15):
        xb = vx + k * 95
        cv2.line(seam, (int(vx + (xb - vx) * (wall_y - vy) / (CH - vy)), wall_y), (int(xb), CH),
                 1.0, 1, cv2.LINE_AA)
    y, step = float(wall_y), 14.0
    while y < CH:
        cv2.line(seam, (0, int(y)), (CW, int(y)), 1.0, 1, cv2.LINE_AA)
        step *= 1.18
        y += step
    canvas *= (1 - 0.12 * seam)[..., None]
    # skirting board, ceiling edge, whiteboard and clock
    cv2.rectangle(canvas, (0, wall_y - 7), (CW, wall_y), (150, 160, 165), -1)
    cv2.rectangle(canvas, (0, 0), (CW, PAD - 60), (225, 230, 232), -1)
    wb_w = 230
    wb_x = int(PAD + WIDTH / 2 - wb_w / 2 + rng.integers(-60, 60))
    wb_y1, wb_y2 = max(PAD - 40, wall_y - 150), wall_y - 45
    if wb_y2 - wb_y1 > 40:
        cv2.rectangle(canvas, (wb_x, wb_y1), (wb_x + wb_w, wb_y2), (150, 150, 150), -1)
        cv2.rectangle(canvas, (wb_x + 4, wb_y1 + 4), (wb_x + wb_w - 4, wb_y2 - 4),
                      (236, 238, 238), -1)
    cx, cy = int(PAD + WIDTH - 70), int(max(PAD - 30, wall_y - 110))
    cv2.circle(canvas, (cx, cy), 17, (60, 60, 60), -1, cv2.LINE_AA)
    cv2.circle(canvas, (cx, cy), 14, (240, 240, 240), -1, cv2.LINE_AA)
    cv2.line(canvas, (cx, cy), (cx + 6, cy - 7), (30, 30, 30), 2, cv2.LINE_AA)
    cv2.line(canvas, (cx, cy), (cx - 2, cy + 10), (30, 30, 30), 1, cv2.LINE_AA)
    # ceiling lights: brighter centre, darker corners
    yy, xx = np.mgrid[0:CH, 0:CW].astype(np.float32)
    light = 1.08 - 0.28 * (((xx - CW / 2) / CW) ** 2 * 2.2 + ((yy - CH * 0.45) / CH) ** 2 * 1.6)
    canvas *= light[..., None]
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _wood(h: int, w: int, rng: np.random.Generator) -> Image:
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    f = rng.uniform(0.15, 0.3)
    grain = np.sin(xs * f + 3 * np.sin(ys * 0.05 + xs * 0.01) + rng.uniform(0, 6)) * 0.5 + 0.5
    return (0.9 + 0.1 * grain).astype(np.float32)


def build_props(lay: Layout, rng: np.random.Generator) -> list[Sprite]:
    """Desks (with papers and a seat card), chairs and partitions."""
    props: list[Sprite] = []
    for s in lay.seats:
        cx = s.cx + PAD
        top, front = s.desk_top + PAD, s.desk_front + PAD
        depth_top = lay.desk_depth * s.scale
        w = s.desk_w
        # chair back behind the seat
        cw, c_top, c_bot = 0.24 * s.scale, top - 0.40 * s.scale, top + 0.02 * s.scale
        pts = np.array([[cx - cw / 2, c_top + 6], [cx - cw / 2 + 6, c_top], [cx + cw / 2 - 6, c_top],
                        [cx + cw / 2, c_top + 6], [cx + cw / 2 + 2, c_bot], [cx - cw / 2 - 2, c_bot]])
        rgb, a, x0, y0 = poly_sprite(pts, (62, 52, 48))
        shade = np.linspace(1.25, 0.8, rgb.shape[0], dtype=np.float32)[:, None, None]
        props.append(Sprite(s.ground_behind - 1, rgb * shade, a, x0, y0))
        # desk top (a trapezoid: back edge narrower) and front panel
        wood = _wood(int(depth_top) + 8, int(w) + 8, rng)
        pts = np.array([[cx - 0.47 * w, top], [cx + 0.47 * w, top],
                        [cx + 0.5 * w, top + depth_top], [cx - 0.5 * w, top + depth_top]])
        rgb, a, x0, y0 = poly_sprite(pts, (135, 172, 205), wood)
        sprite_top = Sprite(s.desk_front, rgb, a, x0, y0)
        pts = np.array([[cx - 0.5 * w, top + depth_top], [cx + 0.5 * w, top + depth_top],
                        [cx + 0.5 * w, front], [cx - 0.5 * w, front]])
        rgb2, a2, x2, y2 = poly_sprite(pts, (92, 120, 148), _wood(int(front - top) + 8, int(w) + 8, rng))
        rgb2 *= np.linspace(1.1, 0.75, rgb2.shape[0], dtype=np.float32)[:, None, None]
        # merge top + front into one sprite
        X0, Y0 = min(x0, x2), min(y0, y2)
        X1 = max(x0 + a.shape[1], x2 + a2.shape[1])
        Y1 = max(y0 + a.shape[0], y2 + a2.shape[0])
        big = np.zeros((Y1 - Y0, X1 - X0, 3), np.uint8)
        alpha = np.zeros((Y1 - Y0, X1 - X0), np.float32)
        for r, al, xx, yy in ((rgb2, a2, x2, y2), (rgb, a, x0, y0)):
            blend(big, r, al, xx - X0, yy - Y0)
            sub = alpha[yy - Y0:yy - Y0 + al.shape[0], xx - X0:xx - X0 + al.shape[1]]
            sub[:] = np.maximum(sub, al)
        # papers, a pen and the seat card on the desk top
        for _ in range(int(rng.integers(2, 4))):
            pw, ph = rng.uniform(0.17, 0.24) * w, depth_top * rng.uniform(0.55, 0.8)
            px = cx - X0 + rng.uniform(-0.3, 0.3) * w
            py = top - Y0 + depth_top * rng.uniform(0.1, 0.4)
            ang = rng.uniform(-0.25, 0.25)
            c, sn = math.cos(ang), math.sin(ang)
            corners = np.array([[-pw / 2, 0], [pw / 2, 0], [pw / 2, ph], [-pw / 2, ph]])
            rot = corners @ np.array([[c, sn], [-sn * 0.4, c]]) + [px, py]
            cv2.fillPoly(big, [np.round(rot).astype(np.int32)], (236, 240, 242), cv2.LINE_AA)
            for li in range(1, 6):
                ly = py + ph * li / 6.5
                cv2.line(big, (int(px - pw * 0.35), int(ly)), (int(px + pw * 0.3), int(ly)),
                         (150, 150, 150), 1, cv2.LINE_AA)
        card_w, card_h = int(0.16 * w), int(0.55 * depth_top)
        kx, ky = int(cx - X0 + 0.28 * w), int(top - Y0 + depth_top * 0.35)
        cv2.rectangle(big, (kx, ky), (kx + card_w, ky + card_h), (245, 245, 245), -1)
        cv2.putText(big, s.seat_id, (kx + 3, ky + card_h - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.3, card_h / 30), (40, 40, 150), 1, cv2.LINE_AA)
        props.append(Sprite(s.desk_front, big.astype(np.float32), alpha, X0, Y0))
        del sprite_top
    # frosted partitions between neighbouring seats of a row
    rows: dict[int, list[SeatGeom]] = {}
    for s in lay.seats:
        rows.setdefault(s.row, []).append(s)
    for row in rows.values():
        row.sort(key=lambda q: q.cx)
        for a_, b_ in pairwise(row):
            xm = PAD + (a_.rect[2] + b_.rect[0]) / 2
            top = a_.desk_top + PAD - 0.36 * a_.scale
            front = a_.desk_front + PAD + 0.02 * a_.scale
            lean = (PAD + WIDTH / 2 - xm) * 0.12
            pts = np.array([[xm + lean - 5, top - 10], [xm + lean + 5, top - 10],
                            [xm + 6, front], [xm - 6, front]])
            rgb, a, x0, y0 = poly_sprite(pts, (205, 200, 190), alpha=0.72)
            props.append(Sprite(a_.desk_front + 0.5, rgb, a, x0, y0))
            edge = np.array([[xm + lean - 5, top - 10], [xm + lean + 5, top - 10],
                             [xm + lean + 5, top - 5], [xm + lean - 5, top - 5]])
            rgb, a, x0, y0 = poly_sprite(edge, (120, 120, 125))
            props.append(Sprite(a_.desk_front + 0.6, rgb, a, x0, y0))
    return props


# --------------------------------------------------------------------------- people


class PersonRenderer:
    """Draws cut-out people with idle sway, walking bob and desk occlusion.

    ``persons`` describes the sources of the cut-outs (default: the demo's :data:`PERSONS`).
    """

    def __init__(self, cutouts: dict[str, Cutout], persons: dict[str, PersonSrc] | None = None,
                 ) -> None:
        self.cutouts = cutouts
        self.persons = PERSONS if persons is None else persons
        self._cache: dict[tuple[str, int], tuple[Image, Image]] = {}

    def scaled(self, key: str, height: int) -> tuple[Image, Image]:
        """The cut-out resized to ``height`` rows (cached)."""
        ck = (key, height)
        if ck not in self._cache:
            cut = self.cutouts[key]
            h, w = cut.alpha.shape
            nw = max(4, round(w * height / h))
            interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
            rgb = cv2.resize(cut.rgb, (nw, height), interpolation=interp)
            a = cv2.resize(cut.alpha, (nw, height), interpolation=interp)
            self._cache[ck] = (rgb, a)
        return self._cache[ck]

    def figure_top(self, p: PersonState, lay: Layout) -> tuple[float, float, float | None]:
        """(top row, standing height, clip row) of a person in view coordinates."""
        src = self.persons[p.source]
        height = lay.height_at(p.g) * src.size
        standing_top = p.g - height
        clip = None
        if p.seat is not None:
            s = lay.seat(p.seat)
            seated_top = s.desk_top + 0.06 * height - min(src.body_frac, 0.55) * height
            top = standing_top + (seated_top - standing_top) * p.seated
            clip = s.desk_front + (s.desk_top + 0.06 * height - s.desk_front) * p.seated
            return top, height, clip
        if not src.full_body:
            raise ValueError(f"{p.source} is a half-body photo and cannot stand or walk")
        return standing_top, height, clip

    def draw(self, canvas: Image, p: PersonState, t: float, phase: float, lay: Layout) -> None:
        """Composite one person onto the world canvas."""
        src = self.persons[p.source]
        top, height, clip = self.figure_top(p, lay)
        sprite_h = max(8, round(src.body_frac * height))
        rgb, a = self.scaled(p.source, sprite_h)
        if clip is not None:
            keep = round(clip - top)
            a = a.copy()
            a[max(0, keep):] = 0
        dx, dy, ang = body_motion(p.moving, t, phase, height)
        # pivot: hips for seated people, feet for standing ones
        piv_y = min(a.shape[0] - 1, 0.55 * height) if p.seated > 0.5 else a.shape[0] - 1
        composite_figure(canvas, rgb, a, p.x + PAD + dx, top + PAD + dy, piv_y, ang,
                         None if clip is None else clip + PAD)


def body_motion(moving: bool, t: float, phase: float, height: float) -> tuple[float, float, float]:
    """(dx, dy, degrees) of a person's idle sway and lean, or of a walking bob."""
    if moving:
        dx = 0.0
        dy = -0.018 * height * abs(math.sin(math.pi * 1.9 * t + phase))
        ang = 2.0 * math.sin(math.pi * 1.9 * t + phase)
    else:
        dx = (0.012 * math.sin(2 * math.pi * t / 6.3 + phase)
              + 0.006 * math.sin(2 * math.pi * t / 2.7 + 2 * phase)) * height
        dy = 0.012 * height * (0.5 + 0.5 * math.sin(2 * math.pi * t / 9.7 + 3 * phase))
        ang = (1.4 * math.sin(2 * math.pi * t / 7.9 + 1.3 * phase)
               + 0.6 * math.sin(2 * math.pi * t / 3.1 + phase))
    return dx, dy, ang


def composite_figure(canvas: Image, rgb: Image, a: Image, cx: float, ty: float, piv_y: float,
                     ang: float, clip_row: float | None) -> None:
    """Rotate a sprite by ``ang`` degrees about ``(centre, piv_y)`` and blend it with its top
    centre at canvas ``(cx, ty)``; rows from canvas row ``clip_row`` down stay hidden."""
    h, w = a.shape
    margin = int(0.08 * h) + 4
    ox, oy = math.floor(cx - w / 2) - margin, math.floor(ty) - margin
    rot = cv2.getRotationMatrix2D((w / 2, piv_y), ang, 1.0)
    rot[0, 2] += (cx - w / 2) - ox
    rot[1, 2] += ty - oy
    size = (w + 2 * margin, h + 2 * margin)
    rgba = np.dstack([rgb, a])
    warped = cv2.warpAffine(rgba, rot, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3]
    if clip_row is not None:  # re-apply the desk clip after rotation
        cut_row = round(clip_row) - oy
        alpha[max(0, cut_row):] = 0
    blend(canvas, warped[..., :3], np.clip(alpha, 0, 1), ox, oy)


# --------------------------------------------------------------------------- phone


def make_phone(rng: np.random.Generator) -> tuple[Image, Image]:
    """A smartphone seen from the front (4x resolution): dark body, lit screen with apps."""
    W4, H4 = 96, 192
    body = np.zeros((H4, W4, 3), np.uint8)
    a = np.zeros((H4, W4), np.uint8)
    cv2.rectangle(a, (6, 0), (W4 - 7, H4 - 1), 255, -1)
    cv2.rectangle(a, (0, 6), (W4 - 1, H4 - 7), 255, -1)
    for cx, cy in ((6, 6), (W4 - 7, 6), (6, H4 - 7), (W4 - 7, H4 - 7)):
        cv2.circle(a, (cx, cy), 6, 255, -1)
    body[:] = (28, 26, 25)
    cv2.rectangle(body, (5, 10), (W4 - 6, H4 - 11), (210, 150, 70), -1)  # wallpaper
    grad = np.linspace(1.15, 0.7, H4 - 21, dtype=np.float32)[:, None, None]
    body[10:H4 - 11, 5:W4 - 5] = np.clip(body[10:H4 - 11, 5:W4 - 5] * grad, 0, 255)
    cv2.rectangle(body, (5, 10), (W4 - 6, 20), (50, 40, 35), -1)  # status bar
    cv2.putText(body, "9:41", (9, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
    colors = [(60, 180, 75), (230, 100, 40), (50, 60, 220), (240, 200, 60), (200, 80, 200),
              (80, 200, 230), (255, 255, 255), (40, 130, 250)]
    for r in range(4):
        for c in range(3):
            col = colors[int(rng.integers(0, len(colors)))]
            x, y = 11 + c * 27, 30 + r * 30
            cv2.rectangle(body, (x, y), (x + 18, y + 18), col, -1, cv2.LINE_AA)
    cv2.rectangle(body, (9, H4 - 36), (W4 - 10, H4 - 16), (235, 225, 215), -1)  # dock
    cv2.circle(body, (W4 // 2, 5), 2, (70, 70, 70), -1)
    return body.astype(np.float32), a.astype(np.float32) / 255


def draw_phone(canvas: Image, phone: tuple[Image, Image], owner_top: float, height: float,
               x: float, seat: SeatGeom, u: float, t: float, skin: tuple[int, int, int]) -> None:
    """Draw the phone (and the hand holding it) raised by ``u`` (0 desk .. 1 face)."""
    ph_h = max(36.0, 0.19 * height)
    side = 1 if seat.cx < WIDTH / 2 else -1
    x_hold = x + side * 0.17 * height + 1.2 * math.sin(t * 5.1)
    y_hold = owner_top + 0.33 * height + 1.0 * math.sin(t * 4.3)
    x_desk, y_desk = x + side * 0.22 * height, seat.desk_top + 0.03 * height
    px = x_desk + (x_hold - x_desk) * u + PAD
    py = y_desk + (y_hold - y_desk) * u + PAD
    rgb4, a4 = phone
    ph_w = ph_h / 2
    rgb = cv2.resize(rgb4, (int(ph_w), int(ph_h)), interpolation=cv2.INTER_AREA)
    a = cv2.resize(a4, (int(ph_w), int(ph_h)), interpolation=cv2.INTER_AREA)
    ang = -side * (12 + 4 * math.sin(t * 1.3))
    m = 12
    rot = cv2.getRotationMatrix2D((ph_w / 2 + m, ph_h / 2 + m), ang, 1.0)
    rgba = cv2.copyMakeBorder(np.dstack([rgb, a]), m, m, m, m, cv2.BORDER_CONSTANT, value=0)
    warped = cv2.warpAffine(rgba, rot, (rgba.shape[1], rgba.shape[0]))
    ox, oy = int(px - rgba.shape[1] / 2), int(py - rgba.shape[0] / 2)
    # hand behind the phone's lower half, thumb over the screen's edge
    hand = np.zeros((CH, CW), np.uint8)
    hx, hy = int(px), int(py + ph_h * 0.28)
    cv2.ellipse(hand, (hx, hy), (int(ph_w * 0.75), int(ph_h * 0.32)), ang, 0, 360, 255, -1,
                cv2.LINE_AA)
    y0, y1 = max(0, hy - int(ph_h)), min(CH, hy + int(ph_h))
    x0, x1 = max(0, hx - int(ph_h)), min(CW, hx + int(ph_h))
    ha = hand[y0:y1, x0:x1].astype(np.float32) / 255
    shade = np.array(skin, np.float32) * np.linspace(1.05, 0.8, y1 - y0, dtype=np.float32)[:, None, None]
    blend(canvas, shade, ha, x0, y0)
    blend(canvas, warped[..., :3], np.clip(warped[..., 3], 0, 1), ox, oy)
    thumb = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(thumb, (hx - x0 - side * int(ph_w * 0.35), hy - y0 - int(ph_h * 0.05)),
                (max(2, int(ph_w * 0.16)), max(3, int(ph_h * 0.16))), ang + side * 25, 0, 360,
                255, -1, cv2.LINE_AA)
    blend(canvas, np.full((y1 - y0, x1 - x0, 3), skin, np.float32) * 0.95,
          thumb.astype(np.float32) / 255, x0, y0)


# --------------------------------------------------------------------------- camera


def osd(frame: Image, t: float, label: str) -> None:
    """Burn in the camera's clock and name, as CCTV cameras do."""
    h0, m0, s0 = START_CLOCK
    secs = h0 * 3600 + m0 * 60 + s0 + int(t)
    text = f"2025-03-18 {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    for txt, org in ((text, (10, 22)), (label, (WIDTH - 12 - 9 * len(label), HEIGHT - 12))):
        cv2.putText(frame, txt, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, txt, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def camera_view(canvas: Image, st: FrameState, rng: np.random.Generator,
                cover_tex: Image, gain: float = 1.0, noise_sigma: float = 1.6) -> Image:
    """Project the world canvas through the (possibly tampered) camera.

    ``gain`` scales the scene light (0.5 = lights dimmed by half) before the sensor noise
    of ``noise_sigma`` grey levels is added.
    """
    tp = st.tamper
    if tp.moved > 0:
        m = tp.moved
        ang = 11.0 * m
        rot = cv2.getRotationMatrix2D((CW / 2, CH / 2), ang, 1.0 + 0.06 * m)
        rot[0, 2] += -PAD - 95 * m
        rot[1, 2] += -PAD + 60 * m
        frame: Image = cv2.warpAffine(canvas, rot, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
    else:
        frame = canvas[PAD:PAD + HEIGHT, PAD:PAD + WIDTH].copy()
    if tp.defocused > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), 0.3 + 7.5 * tp.defocused)
    if tp.covered > 0:
        c = tp.covered
        blurred = cv2.GaussianBlur(frame, (0, 0), 1 + 14 * c).astype(np.float32)
        out = blurred + (cover_tex - blurred) * min(1.0, c * 1.05)
        frame = np.clip(out, 0, 255).astype(np.uint8)
    noise = rng.normal(0, noise_sigma, frame.shape).astype(np.float32)
    lit = frame.astype(np.float32) if gain == 1.0 else frame.astype(np.float32) * gain
    return np.clip(lit + noise, 0, 255).astype(np.uint8)


def make_cover_texture(rng: np.random.Generator) -> Image:
    """A palm pressed on the lens: dark skin tones, smooth, a little light leaking in."""
    small = rng.uniform(0.7, 1.1, (6, 8)).astype(np.float32)
    field = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    leak = np.exp(-(((xx - 40) / 160) ** 2 + ((yy - 440) / 120) ** 2)) * 0.8
    base = np.array([38, 52, 78], np.float32)
    return np.clip(base * (field + leak)[..., None], 0, 255)


# --------------------------------------------------------------------------- clips


class H264Writer:
    """Encodes BGR frames to an H.264 MP4 (640x480 @ 15 fps, GOP 2 s, one x264 thread).

    By default CRF quality (:data:`CRF`, High profile, preset medium); with ``options``
    other x264 settings, e.g. the agent's archive rate control.
    """

    def __init__(self, path: Path, options: dict[str, str] | None = None) -> None:
        import av  # PyAV; imported here so the script module stays dependency-free

        self.container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=FPS)
        self.stream.width, self.stream.height, self.stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, FPS)
        self.stream.codec_context.gop_size = 2 * FPS
        self.stream.options = {**(options or {
            "crf": CRF, "preset": "medium", "threads": "1", "profile": "high",
            "x264-params": "keyint=30:min-keyint=30:scenecut=0"})}
        self._av = av

    def write(self, frame: Image, index: int) -> None:
        """Encode one frame shown at ``index / FPS``."""
        vf = self._av.VideoFrame.from_ndarray(frame, format="bgr24")
        vf.pts = index
        vf.time_base = Fraction(1, FPS)
        for pkt in self.stream.encode(vf):
            self.container.mux(pkt)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()


def render_clip(spec: ClipSpec, cutouts: dict[str, Cutout], textures: dict[str, Image],
                out_dir: Path, n_frames: int | None = None) -> Path:
    """Render and encode one clip; write its room and truth files beside it."""
    rng = np.random.default_rng(spec.seed)
    lay = spec.geom
    background = build_background(lay, rng, textures)
    props = build_props(lay, rng)
    phone = make_phone(rng)
    cover_tex = make_cover_texture(rng)
    people = PersonRenderer(cutouts)
    phases = {a.name: a.phase for a in spec.actors()}
    states = frame_states(spec, n_frames)
    label = f"{spec.room_id.upper()} CAM1"

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.clip}.mp4"
    enc = H264Writer(path)
    last: Image | None = None
    for st in states:
        if st.tamper.frozen and last is not None:
            frame = last
        else:
            canvas = background.copy()
            items: list[tuple[float, int, object]] = [(p.depth, i, p) for i, p in enumerate(props)]
            for j, p in enumerate(st.people):
                items.append((p.g + PAD * 0 - 0.0, 1000 + j, p))
            for k, (ph, u) in enumerate(st.phones):
                items.append((lay.seat(ph.seat).desk_front + 0.7, 2000 + k, (ph, u)))
            items.sort(key=lambda it: (it[0], it[1]))
            for _, _, obj in items:
                if isinstance(obj, Sprite):
                    blend(canvas, obj.rgb, obj.alpha, int(obj.x0), int(obj.y0))
                elif isinstance(obj, PersonState):
                    people.draw(canvas, obj, st.t, phases[obj.actor], lay)
                else:
                    ph, u = obj  # type: ignore[misc]
                    owner = next(p for p in st.people if p.seat == ph.seat)
                    top, height, _ = people.figure_top(owner, lay)
                    draw_phone(canvas, phone, top, height, owner.x, lay.seat(ph.seat), u, st.t,
                               PERSONS[owner.source].skin)
            frame = camera_view(canvas, st, rng, cover_tex)
            osd(frame, st.t, label)
            last = frame
        enc.write(frame, st.index)
    enc.close()

    if n_frames is None:
        (out_dir / f"{spec.clip}.room.yaml").write_text(
            yaml.safe_dump(room_doc(spec), allow_unicode=True, sort_keys=False,
                           default_flow_style=None), encoding="utf-8")
        (out_dir / f"{spec.clip}.truth.json").write_text(
            json.dumps(truth_doc(spec), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def load_textures() -> dict[str, Image]:
    """Wall and floor textures."""
    return {k: load_image(k) for k in ("brick.png", "gravel.png")}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", action="append", help="clip stem(s) to render, e.g. room_a")
    ap.add_argument("--frames", type=int, default=None, help="render only the first N frames")
    ap.add_argument("--digests", action="store_true", help="print source sha256 and exit")
    args = ap.parse_args(argv)
    try:
        if args.digests:
            for k, v in source_digests().items():
                print(f"{v}  {k}")
            return 0
        cutouts = load_cutouts()
        textures = load_textures()
    except MissingSource as exc:
        print(f"make_samples: {exc}", file=sys.stderr)
        return 2
    for spec in CLIPS:
        if args.only and spec.clip not in args.only:
            continue
        path = render_clip(spec, cutouts, textures, args.out, args.frames)
        print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
