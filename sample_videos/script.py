"""Scripts of the sample clips and the ground truth derived from them.

This module is pure geometry and timing: it needs no image source and no
video library, so the tests can rebuild the truth of any clip cheaply.  The
renderer (``make_samples.py``) draws exactly the per-frame state computed here,
so the truth files and the pixels come from one source.

Coordinates are pixels of the 640x480 camera view in its *original*
(untampered) pose.  A person's *anchor* is ``(x, ground_y)``: the horizontal
centre of the body and the image row of the feet.  A person belongs to the seat
whose polygon contains the lower-centre point of their visible box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

WIDTH = 640
HEIGHT = 480
FPS = 15

Rule = Literal["extra_person", "phone", "seat_empty", "camera_tamper"]
TamperKind = Literal["covered", "defocused", "moved", "frozen"]

#: Walking speed in standing heights per second (~1.2 m/s for a 1.75 m adult).
WALK_SPEED = 0.7
#: Time to stand up from / sit down on a chair.
RISE_S = 0.9
#: Duration of the fade in/out of a camera tamper (lens covered, blur, knock).
TAMPER_RAMP_S = 0.5


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class SeatGeom:
    """One seat: a desk with a chair behind it, seen from a high front camera."""

    seat_id: str
    row: int
    col: int
    cx: float  #: horizontal centre of desk and chair
    desk_w: float  #: desk width in pixels
    desk_top: float  #: image row of the desk top's back edge
    desk_front: float  #: image row where the desk's front panel meets the floor
    scale: float  #: standing height (px) of an adult standing at this row
    margin_l: float  #: polygon margin left of the desk
    margin_r: float  #: polygon margin right of the desk
    visitor_side: int  #: -1/+1: side of the desk where a visitor stands

    @property
    def ground_behind(self) -> float:
        """Feet row of a person standing or sitting behind the desk."""
        return self.desk_front - 0.035 * self.scale

    @property
    def rect(self) -> tuple[float, float, float, float]:
        """Seat polygon as an axis-aligned rectangle ``(x1, y1, x2, y2)`` in px."""
        x1 = max(0.0, self.cx - self.desk_w / 2 - self.margin_l)
        x2 = min(float(WIDTH), self.cx + self.desk_w / 2 + self.margin_r)
        y1 = self.desk_top - 0.25 * self.scale
        y2 = self.desk_front + 0.1 * self.scale
        return (x1, y1, x2, y2)

    def polygon(self) -> list[list[float]]:
        """Normalised polygon (clockwise from top-left) for the room file."""
        x1, y1, x2, y2 = self.rect
        pts = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        return [[round(x / WIDTH, 4), round(y / HEIGHT, 4)] for x, y in pts]

    def contains(self, x: float, y: float) -> bool:
        """Whether the pixel point lies inside the seat polygon."""
        x1, y1, x2, y2 = self.rect
        return x1 <= x <= x2 and y1 <= y <= y2

    @property
    def visitor_spot(self) -> tuple[float, float]:
        """Anchor of a visitor standing at the side of this desk (inside the polygon)."""
        margin = self.margin_r if self.visitor_side > 0 else self.margin_l
        x = self.cx + self.visitor_side * (self.desk_w / 2 + 0.45 * margin)
        return (x, self.desk_front + 0.04 * self.scale)


@dataclass(frozen=True)
class Layout:
    """Seats of one room plus the perspective of its floor."""

    name: str
    seats: tuple[SeatGeom, ...]
    #: floor rows used to interpolate a person's height from their ground row
    persp: tuple[tuple[float, float], tuple[float, float]]
    wall_y: float  #: image row where the back wall meets the floor
    desk_depth: float = 0.085  #: visible depth of a desk top in standing heights (camera tilt)

    def seat(self, seat_id: str) -> SeatGeom:
        """Seat by id."""
        for s in self.seats:
            if s.seat_id == seat_id:
                return s
        raise KeyError(seat_id)

    def height_at(self, ground_y: float) -> float:
        """Standing height in px of a person whose feet are at ``ground_y``."""
        (g0, h0), (g1, h1) = self.persp
        return h0 + (ground_y - g0) * (h1 - h0) / (g1 - g0)


def _row(
    row: int, xs: list[float], desk_w: float, desk_top: float, desk_front: float,
    scale: float, first: int, margins: list[tuple[float, float]], sides: list[int],
) -> list[SeatGeom]:
    return [
        SeatGeom(f"S{first + i}", row, i, x, desk_w, desk_top, desk_front, scale, ml, mr, sd)
        for i, (x, (ml, mr), sd) in enumerate(zip(xs, margins, sides, strict=True))
    ]


LAYOUTS: dict[str, Layout] = {
    "grid2x2": Layout(
        "grid2x2",
        tuple(
            _row(0, [175, 465], 150, 150, 212, 250, 1, [(60, 30), (30, 60)], [-1, 1])
            + _row(1, [140, 500], 190, 318, 398, 300, 3, [(50, 40), (40, 60)], [1, 1])
        ),
        ((212.0, 250.0), (398.0, 300.0)),
        wall_y=70,
    ),
    "row3": Layout(
        "row3",
        tuple(_row(0, [112, 320, 528], 140, 258, 340, 275, 1,
                   [(70, 30), (32, 32), (30, 70)], [-1, 1, 1])),
        ((250.0, 245.0), (340.0, 275.0)),
        wall_y=120,
    ),
    "row2": Layout(
        "row2",
        tuple(_row(0, [170, 470], 180, 262, 350, 300, 1, [(80, 55), (55, 80)], [1, 1])),
        ((262.0, 270.0), (350.0, 300.0)),
        wall_y=125,
    ),
}


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Key:
    """Keyframe of a person's path: time, anchor and how seated (1) or standing (0)."""

    t: float
    x: float
    g: float
    seated: float


@dataclass(frozen=True)
class PersonState:
    """Where a person is at one instant."""

    actor: str
    source: str
    x: float
    g: float
    seated: float
    moving: bool
    seat: str | None  #: seat whose desk the person sits or stands behind, if any
    point: tuple[float, float]  #: lower-centre of the visible box


@dataclass
class Actor:
    """A photographed person following a keyframed path."""

    name: str
    source: str
    keys: list[Key]
    home: str | None = None  #: seat the person sits at (None for visitors)
    phase: float = 0.0  #: seed of the idle sway

    def at(self, t: float, layout: Layout) -> PersonState | None:
        """State at time ``t`` or None when outside the frame / not yet arrived."""
        ks = self.keys
        if t < ks[0].t or t > ks[-1].t:
            return None
        for a, b in pairwise(ks):
            if a.t <= t <= b.t:
                u = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
                x = a.x + (b.x - a.x) * u
                g = a.g + (b.g - a.g) * u
                seated = a.seated + (b.seated - a.seated) * u
                moving = (a.x, a.g) != (b.x, b.g)
                break
        else:  # pragma: no cover - t == last key
            x, g, seated, moving = ks[-1].x, ks[-1].g, ks[-1].seated, False
        height = layout.height_at(g)
        if x < -0.3 * height or x > WIDTH + 0.3 * height:
            return None
        seat = None
        point_y = g
        for s in layout.seats:
            x1 = s.cx - s.desk_w / 2
            x2 = s.cx + s.desk_w / 2
            if abs(g - s.ground_behind) < 2 and x1 <= x <= x2:
                seat = s.seat_id
                point_y = min(g, s.desk_top + 0.06 * s.scale)  # legs hidden by the desk
        return PersonState(self.name, self.source, x, g, seated, moving, seat, (x, point_y))


def _walk_time(layout: Layout, a: tuple[float, float], b: tuple[float, float]) -> float:
    dist = math.dist(a, b)
    return dist / (WALK_SPEED * layout.height_at((a[1] + b[1]) / 2))


def _path(layout: Layout, t0: float, pts: list[tuple[float, float, float]],
          pause: float = 0.0) -> list[Key]:
    """Keys walking through ``pts`` (x, g, seated) starting at t0 at walking speed."""
    keys = [Key(t0, *pts[0])]
    t = t0
    for a, b in pairwise(pts):
        if (a[0], a[1]) == (b[0], b[1]):
            t += RISE_S
        else:
            t += _walk_time(layout, (a[0], a[1]), (b[0], b[1]))
        keys.append(Key(t, *b))
    if pause:
        keys.append(Key(t + pause, *pts[-1]))
    return keys


def _exit_x(x: float, layout: Layout, g: float) -> float:
    off = 0.45 * layout.height_at(g)
    return -off if x < WIDTH / 2 else WIDTH + off


def evaluator_keys(layout: Layout, seat_id: str, duration: float,
                   absences: list[tuple[float, float]]) -> list[Key]:
    """Keys of an evaluator seated at ``seat_id`` who leaves at each ``(t_leave, t_back)``.

    ``t_leave`` is when they start to stand up; ``t_back`` is when they are seated
    again.  They walk sideways out of the frame on the outer side of the room.
    """
    s = layout.seat(seat_id)
    home = (s.cx, s.ground_behind)
    out_x = _exit_x(s.cx, layout, s.ground_behind)
    keys = [Key(0.0, *home, 1.0)]
    for t_leave, t_back in absences:
        walk = _walk_time(layout, home, (out_x, home[1]))
        keys += [
            Key(t_leave, *home, 1.0),
            Key(t_leave + RISE_S, *home, 0.0),
            Key(t_leave + RISE_S + walk, out_x, home[1], 0.0),
            Key(t_back - RISE_S - walk, out_x, home[1], 0.0),
            Key(t_back - RISE_S, *home, 0.0),
            Key(t_back, *home, 1.0),
        ]
    keys.append(Key(duration, *home, 1.0))
    return keys


def visitor_keys(layout: Layout, seat_id: str, t_arrive: float, stay: float) -> list[Key]:
    """Keys of a visitor who walks in from the side and stands at a seat's desk.

    ``t_arrive`` is when the visitor reaches the standing spot; they stay for
    ``stay`` seconds and walk out the way they came.
    """
    s = layout.seat(seat_id)
    sx, sg = s.visitor_spot
    out_x = _exit_x(sx, layout, sg)
    walk = _walk_time(layout, (out_x, sg), (sx, sg))
    return [
        Key(t_arrive - walk, out_x, sg, 0.0),
        Key(t_arrive, sx, sg, 0.0),
        Key(t_arrive + stay, sx, sg, 0.0),
        Key(t_arrive + stay + walk, out_x, sg, 0.0),
    ]


def passer_keys(layout: Layout, t0: float, ground: float, left_to_right: bool) -> list[Key]:
    """Keys of someone crossing the room along an aisle (not at any seat)."""
    xa, xb = _exit_x(0, layout, ground), _exit_x(WIDTH, layout, ground)
    if not left_to_right:
        xa, xb = xb, xa
    return _path(layout, t0, [(xa, ground, 0.0), (xb, ground, 0.0)])


# --------------------------------------------------------------------------- clip script


@dataclass(frozen=True)
class PhoneUse:
    """An evaluator takes out a phone at ``start`` and puts it away at ``end``."""

    seat: str
    start: float
    end: float


@dataclass(frozen=True)
class Tamper:
    """A camera tamper between ``start`` and ``end`` (the fully-on interval)."""

    kind: TamperKind
    start: float
    end: float


@dataclass
class ClipSpec:
    """Everything that happens in one clip."""

    clip: str  #: file stem, e.g. ``room_a``
    room_id: str
    room_name: str
    layout: str
    duration: float
    seed: int
    evaluators: dict[str, str]  #: seat id -> source person
    absences: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    visitors: list[tuple[str, str, float, float]] = field(default_factory=list)
    #: (source, seat, t_arrive, stay)
    passers: list[tuple[str, float, float, bool]] = field(default_factory=list)
    #: (source, t0, ground_y, left_to_right)
    phones: list[PhoneUse] = field(default_factory=list)
    tampers: list[Tamper] = field(default_factory=list)

    @property
    def geom(self) -> Layout:
        """The room layout."""
        return LAYOUTS[self.layout]

    @property
    def n_frames(self) -> int:
        """Number of frames of the clip."""
        return round(self.duration * FPS)

    def actors(self) -> list[Actor]:
        """All people of the clip, in a fixed order."""
        lay = self.geom
        out: list[Actor] = []
        for i, (seat_id, src) in enumerate(sorted(self.evaluators.items())):
            keys = evaluator_keys(lay, seat_id, self.duration, self.absences.get(seat_id, []))
            out.append(Actor(f"eval-{seat_id}", src, keys, home=seat_id, phase=1.7 * i + 0.3))
        for i, (src, seat_id, t_arr, stay) in enumerate(self.visitors):
            out.append(Actor(f"visitor-{i}", src, visitor_keys(lay, seat_id, t_arr, stay),
                             phase=4.1 + i))
        for i, (src, t0, g, l2r) in enumerate(self.passers):
            out.append(Actor(f"passer-{i}", src, passer_keys(lay, t0, g, l2r), phase=6.3 + i))
        return out


@dataclass(frozen=True)
class TamperState:
    """Strength of each tamper effect at one frame (0 = off, 1 = fully on)."""

    covered: float = 0.0
    defocused: float = 0.0
    moved: float = 0.0
    frozen: bool = False


def _ramp(t: float, start: float, end: float, ramp: float, hold: bool = False) -> float:
    """1 inside [start, end], linear ramps of ``ramp`` s centred on the edges."""
    if t < start - ramp / 2:
        return 0.0
    if t < start + ramp / 2:
        return (t - (start - ramp / 2)) / ramp
    if hold or t <= end - ramp / 2:
        return 1.0
    if t < end + ramp / 2:
        return 1.0 - (t - (end - ramp / 2)) / ramp
    return 0.0


def tamper_at(spec: ClipSpec, t: float) -> TamperState:
    """Tamper effects in force at time ``t``."""
    vals = {"covered": 0.0, "defocused": 0.0, "moved": 0.0}
    frozen = False
    for tp in spec.tampers:
        if tp.kind == "frozen":
            frozen = frozen or tp.start <= t < tp.end
        else:
            hold = tp.kind == "moved" and tp.end >= spec.duration
            vals[tp.kind] = max(vals[tp.kind], _ramp(t, tp.start, tp.end, TAMPER_RAMP_S, hold))
    return TamperState(vals["covered"], vals["defocused"], vals["moved"], frozen)


def phone_at(spec: ClipSpec, t: float) -> list[tuple[PhoneUse, float]]:
    """Phones visible at ``t`` with how far raised they are (0 at desk, 1 at the face)."""
    out = []
    for ph in spec.phones:
        if ph.start <= t < ph.end:
            raise_s = 0.8
            u = min(1.0, (t - ph.start) / raise_s, (ph.end - t) / raise_s)
            out.append((ph, max(0.0, u)))
    return out


@dataclass(frozen=True)
class FrameState:
    """Everything the renderer needs for one frame (and the truth is built from)."""

    index: int
    t: float
    people: tuple[PersonState, ...]
    phones: tuple[tuple[PhoneUse, float], ...]
    tamper: TamperState


def frame_states(spec: ClipSpec, n: int | None = None) -> list[FrameState]:
    """Per-frame states of the first ``n`` frames (all by default)."""
    lay = spec.geom
    actors = spec.actors()
    total = spec.n_frames if n is None else min(n, spec.n_frames)
    out = []
    for i in range(total):
        t = i / FPS
        people = tuple(p for a in actors if (p := a.at(t, lay)) is not None)
        out.append(FrameState(i, t, people, tuple(phone_at(spec, t)), tamper_at(spec, t)))
    return out


# --------------------------------------------------------------------------- truth


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True as (first, last+1) frame indices."""
    runs, start = [], None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i))
            start = None
    return runs


def derive_events(lay: Layout, points: list[list[tuple[float, float]]],
                  phone_seats: list[set[str]], tampers: list[TamperState],
                  ) -> list[dict[str, object]]:
    """Events from per-frame facts: the people's membership points, the seats whose phone
    is visible and the tamper effects; sorted by start."""
    events: list[dict[str, object]] = []

    def add(rule: str, kind: str | None, seat: str | None, flags: list[bool]) -> None:
        for a, b in _runs(flags):
            events.append({"rule": rule, "kind": kind, "seat": seat,
                           "start_s": round(a / FPS, 3), "end_s": round(b / FPS, 3)})

    for s in lay.seats:
        counts = [sum(1 for pt in pts if s.contains(*pt)) for pts in points]
        add("extra_person", None, s.seat_id, [c >= 2 for c in counts])
        add("seat_empty", None, s.seat_id, [c == 0 for c in counts])
        add("phone", None, s.seat_id, [s.seat_id in ph for ph in phone_seats])
    add("camera_tamper", "covered", None, [tp.covered >= 0.5 for tp in tampers])
    add("camera_tamper", "defocused", None, [tp.defocused >= 0.5 for tp in tampers])
    add("camera_tamper", "moved", None, [tp.moved >= 0.5 for tp in tampers])
    add("camera_tamper", "frozen", None, [tp.frozen for tp in tampers])
    events.sort(key=lambda e: (e["start_s"], str(e["rule"]), str(e["seat"])))
    return events


def truth_events(spec: ClipSpec, n: int | None = None) -> list[dict[str, object]]:
    """Ground-truth events derived from the per-frame states of the script."""
    states = frame_states(spec, n)
    return derive_events(spec.geom, [[p.point for p in st.people] for st in states],
                         [{ph.seat for ph, _ in st.phones} for st in states],
                         [st.tamper for st in states])


def truth_doc(spec: ClipSpec) -> dict[str, object]:
    """The ``<clip>.truth.json`` document."""
    return {
        "clip": f"{spec.clip}.mp4",
        "room": f"{spec.clip}.room.yaml",
        "fps": FPS,
        "duration_s": round(spec.n_frames / FPS, 3),
        "events": truth_events(spec),
    }


def room_doc(spec: ClipSpec, folder: str = "sample_videos") -> dict[str, object]:
    """The ``<clip>.room.yaml`` document (the camera's source is ``folder/<clip>.mp4``)."""
    return {
        "id": spec.room_id,
        "name": spec.room_name,
        "cameras": [{
            "id": "cam1",
            "source": f"{folder}/{spec.clip}.mp4",
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
        }],
        "seats": [
            {"id": s.seat_id, "camera": "cam1", "polygon": s.polygon(), "row": s.row, "col": s.col}
            for s in spec.geom.seats
        ],
    }


# --------------------------------------------------------------------------- the clips

CLIPS: list[ClipSpec] = [
    ClipSpec(
        clip="room_a", room_id="room-a", room_name="评标室A", layout="grid2x2",
        duration=60.0, seed=101,
        evaluators={"S1": "astronaut", "S2": "ancelotti", "S3": "bus_black", "S4": "bus_coat"},
        visitors=[("bus_coat_flip", "S3", 12.0, 11.0)],
        passers=[("bus_coat_flip", 28.0, 450.0, True)],
        phones=[PhoneUse("S2", 36.0, 47.0)],
        tampers=[Tamper("covered", 52.0, 58.0)],
    ),
    ClipSpec(
        clip="room_b", room_id="room-b", room_name="评标室B", layout="row3",
        duration=55.0, seed=202,
        evaluators={"S1": "bus_coat", "S2": "astronaut", "S3": "ancelotti"},
        absences={"S1": [(8.0, 34.0)]},
        phones=[PhoneUse("S3", 40.0, 50.0)],
    ),
    ClipSpec(
        clip="room_c", room_id="room-c", room_name="评标室C", layout="row2",
        duration=60.0, seed=303,
        evaluators={"S1": "ancelotti", "S2": "astronaut"},
        visitors=[("bus_coat", "S1", 9.0, 12.0)],
        tampers=[Tamper("defocused", 29.0, 36.0), Tamper("moved", 45.0, 60.0)],
    ),
    ClipSpec(
        clip="room_d", room_id="room-d", room_name="评标室D", layout="grid2x2",
        duration=62.0, seed=404,
        evaluators={"S1": "ancelotti", "S2": "astronaut_flip", "S3": "bus_coat", "S4": "bus_black"},
        absences={"S4": [(6.0, 32.0)]},
        phones=[PhoneUse("S1", 37.0, 46.0)],
        tampers=[Tamper("frozen", 50.0, 59.0)],
    ),
    ClipSpec(
        clip="room_e", room_id="room-e", room_name="评标室E", layout="row3",
        duration=45.0, seed=505,
        evaluators={"S1": "ancelotti_flip", "S2": "bus_black", "S3": "astronaut_flip"},
    ),
    ClipSpec(
        clip="room_f", room_id="room-f", room_name="评标室F", layout="row2",
        duration=50.0, seed=606,
        evaluators={"S1": "ancelotti", "S2": "bus_coat"},
        phones=[PhoneUse("S1", 7.0, 17.0)],
        visitors=[("bus_black", "S2", 24.0, 10.0)],
        tampers=[Tamper("covered", 40.0, 46.0)],
    ),
]


def clip_by_name(name: str) -> ClipSpec:
    """The clip spec with file stem ``name``."""
    for c in CLIPS:
        if c.clip == name:
            return c
    raise KeyError(name)
