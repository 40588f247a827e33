"""Scenarios of the evaluation set and the ground truth derived from them.

Pure geometry and timing, like :mod:`sample_videos.script` (whose seat, layout,
key-frame and tamper machinery it reuses): no image source and no video library
is needed, so the tests can rebuild every truth file cheaply.  The renderer
(:mod:`sample_videos.evalset.make`) draws exactly the per-frame states computed
here.

What is new compared with the demo clips:

* people are not only seated or standing beside a desk: a visitor can stand
  *behind* a seated evaluator, lean in over the shoulder or crouch beside the
  desk (head and shoulders above it); anyone whose feet are behind a desk and
  within its width has the legs hidden, so their membership point is the desk
  top line, wherever they stand;
* hand-held things: phones (incidents) held at the face, in both hands at desk
  height (back or screen toward the camera), lying on the desk, or half covered
  by a hand, of several sizes and case colours; and the hard negatives
  (calculator, wallet, stapler, cup near the face; writing, turning pages,
  leaning) that are not incidents;
* lights dimmed by half for a whole clip or a part of it, and the agent's
  archive bitrate (200 kbps) for some clips;
* four more layouts with a steeper or shallower camera and near or far seats.

Every scripted incident declares the (rule, kind, seat) it must produce; the
derivation checks that the per-frame truth yields exactly those events, one
each, and nothing else (e.g. a visitor crossing a neighbour's seat), and that
quiet gaps of at least :data:`MIN_GAP_S` separate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from sample_videos.script import (
    FPS,
    WIDTH,
    Key,
    Layout,
    SeatGeom,
    Tamper,
    TamperState,
    _path,
    _row,
    derive_events,
    evaluator_keys,
    room_doc,
    tamper_at,
    visitor_keys,
)
from sample_videos.script import (
    LAYOUTS as DEMO_LAYOUTS,
)

#: Minimum quiet time between two incidents of a clip.
MIN_GAP_S = 6.0
#: Gain of the room light while dimmed, and the ramp of a light change.
DIM_GAIN = 0.5
DIM_RAMP_S = 1.0
#: Height of a 6.5" phone (~16 cm) in standing heights (~1.75 m).
PHONE_H = 0.091
#: Seconds a visitor takes to lean in or crouch down (and back).
POSE_S = 1.0
#: Archive bitrate of the agent (``capture.bitrate_kbps``).
ARCHIVE_KBPS = 200

Half = Literal["dev", "test"]
PhoneStyle = Literal["face", "hands", "screen", "desk", "covered"]
VisitStyle = Literal["side", "behind", "lean", "crouch"]
ObjKind = Literal["phone", "calculator", "wallet", "stapler", "cup"]

# --------------------------------------------------------------------------- layouts


def _layout(name: str, rows: list[tuple[list[float], float, float, float, float]],
            margins: list[list[tuple[float, float]]], wall_y: float, desk_depth: float,
            ) -> Layout:
    """A layout from rows ``(xs, desk_w, desk_top, desk_front, scale)``; perspective from
    the first and last row (or the one row with a 10 % height change over 100 px)."""
    seats: list[SeatGeom] = []
    for r, ((xs, w, top, front, scale), mg) in enumerate(zip(rows, margins, strict=True)):
        sides = [-1 if x < WIDTH / 2 else 1 for x in xs]
        seats += _row(r, xs, w, top, front, scale, len(seats) + 1, mg, sides)
    first, last = rows[0], rows[-1]
    if first is last:
        persp = ((first[3], first[4]), (first[3] + 100.0, first[4] * 1.1))
    else:
        persp = ((first[3], first[4]), (last[3], last[4]))
    return Layout(name, tuple(seats), persp, wall_y=wall_y, desk_depth=desk_depth)


LAYOUTS: dict[str, Layout] = {
    **DEMO_LAYOUTS,
    # camera mounted higher and tilted down more: rows far apart, a far back row
    "steep2x2": _layout("steep2x2", [([190, 450], 130, 142, 207, 190),
                                     ([150, 490], 185, 318, 410, 290)],
                        [[(55, 30), (30, 55)], [(60, 45), (45, 60)]], wall_y=40, desk_depth=0.12),
    # camera lower and flatter: one row of big people, much wall
    "shallow3": _layout("shallow3", [([110, 320, 530], 140, 300, 362, 330)],
                        [[(70, 30), (32, 32), (30, 70)]], wall_y=185, desk_depth=0.055),
    # four small desks far from the camera
    "far4": _layout("far4", [([95, 245, 395, 545], 110, 200, 255, 200)],
                    [[(45, 18), (18, 18), (18, 18), (18, 45)]], wall_y=105, desk_depth=0.09),
    # two desks right in front of a low camera
    "near2": _layout("near2", [([165, 475], 200, 290, 380, 345)],
                     [[(90, 50), (50, 90)]], wall_y=150, desk_depth=0.07),
}

#: Variation tag of the camera of each layout.
CAMERA_TAG = {"grid2x2": "cam_demo", "row3": "cam_demo", "row2": "cam_demo",
              "steep2x2": "cam_high", "shallow3": "cam_low", "far4": "cam_far", "near2": "cam_near"}


def seat_scale_tag(s: SeatGeom) -> str:
    """``far_seat`` / ``mid_seat`` / ``near_seat`` by the standing height at the seat."""
    return "far_seat" if s.scale < 220 else "near_seat" if s.scale >= 300 else "mid_seat"


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class PKey:
    """Key frame of a person: anchor, how seated (1) / crouched (1), lean in degrees."""

    t: float
    x: float
    g: float
    seated: float = 0.0
    crouch: float = 0.0
    lean: float = 0.0


@dataclass(frozen=True)
class Person:
    """Where a person is at one instant and what the camera sees of them."""

    actor: str
    source: str
    x: float
    g: float
    seated: float
    crouch: float
    lean: float
    moving: bool
    desk: str | None  #: seat whose desk hides this person's legs, if any
    home: str | None  #: evaluator's own seat
    point: tuple[float, float]  #: lower centre of the visible box


def hiding_desk(lay: Layout, x: float, g: float) -> SeatGeom | None:
    """The desk in front of a person standing at ``(x, g)`` (feet behind its front edge,
    in front of its back edge, within its width), which hides their legs."""
    for s in lay.seats:
        if s.desk_top < g <= s.desk_front - 0.01 * s.scale and abs(x - s.cx) <= s.desk_w / 2:
            return s
    return None


@dataclass
class Mover:
    """A photographed person following key frames."""

    name: str
    source: str
    keys: list[PKey]
    home: str | None = None
    phase: float = 0.0

    def at(self, t: float, lay: Layout) -> Person | None:
        """State at ``t``; None before the first / after the last key or outside the view."""
        ks = self.keys
        if t < ks[0].t or t > ks[-1].t:
            return None
        a, b = ks[-1], ks[-1]
        for a, b in pairwise(ks):
            if a.t <= t <= b.t:
                break
        u = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
        x, g = a.x + (b.x - a.x) * u, a.g + (b.g - a.g) * u
        height = lay.height_at(g)
        if x < -0.3 * height or x > WIDTH + 0.3 * height:
            return None
        desk = hiding_desk(lay, x, g)
        py = g if desk is None else min(g, desk.desk_top + 0.06 * desk.scale)
        return Person(self.name, self.source, x, g,
                      a.seated + (b.seated - a.seated) * u,
                      a.crouch + (b.crouch - a.crouch) * u,
                      a.lean + (b.lean - a.lean) * u,
                      (a.x, a.g) != (b.x, b.g), None if desk is None else desk.seat_id,
                      self.home, (x, py))


def _pkeys(keys: list[Key]) -> list[PKey]:
    return [PKey(k.t, k.x, k.g, k.seated) for k in keys]


def _outer_side(s: SeatGeom) -> int:
    return -1 if s.cx < WIDTH / 2 else 1


def visit_spot(s: SeatGeom, style: VisitStyle) -> tuple[float, float]:
    """Where a visitor of ``style`` stands at seat ``s`` (anchor x, feet row)."""
    side = _outer_side(s)
    if style == "behind":
        return s.cx + side * 0.13 * s.desk_w, s.ground_behind - 0.07 * s.scale
    if style == "lean":
        return s.cx + side * 0.24 * s.desk_w, s.ground_behind - 0.035 * s.scale
    if style == "crouch":
        return s.cx + side * (s.desk_w / 2 - 0.11 * s.scale), s.ground_behind + 0.015 * s.scale
    return s.visitor_spot


def visit_keys(lay: Layout, seat: str, style: VisitStyle, t_arrive: float, stay: float,
               ) -> list[PKey]:
    """A visitor walks in from the seat's outer side, stands (leans in / crouches) for
    ``stay`` seconds counted from ``t_arrive`` and walks out the same way."""
    s = lay.seat(seat)
    if style == "side":
        return _pkeys(visitor_keys(lay, seat, t_arrive, stay))
    x, g = visit_spot(s, style)
    out_x = -0.45 * lay.height_at(g) if _outer_side(s) < 0 else WIDTH + 0.45 * lay.height_at(g)
    walk_in = _path(lay, 0.0, [(out_x, g, 0.0), (x, g, 0.0)])[-1].t
    lean = -_outer_side(s) * 16.0 if style == "lean" else 0.0
    crouch = 1.0 if style == "crouch" else 0.0
    return [
        PKey(t_arrive - walk_in, out_x, g),
        PKey(t_arrive, x, g),
        PKey(t_arrive + POSE_S, x, g, crouch=crouch, lean=lean),
        PKey(t_arrive + stay - POSE_S, x, g, crouch=crouch, lean=lean),
        PKey(t_arrive + stay, x, g),
        PKey(t_arrive + stay + walk_in, out_x, g),
    ]


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class Handheld:
    """Something an evaluator holds or puts on the desk from ``start`` to ``end``.

    Only ``obj == "phone"`` is an incident; the rest are hard negatives.  ``style``:
    ``face`` (at the ear / mouth), ``hands`` (both hands at desk height, the back toward
    the camera), ``screen`` (desk height, screen toward the camera), ``desk`` (lying on
    the desk, screen up), ``covered`` (a hand covers 30–50 % of it).
    """

    seat: str
    start: float
    end: float
    style: PhoneStyle = "face"
    obj: ObjKind = "phone"
    color: str = "black"  #: case colour: black, white, blue, gold (phones)
    size: float = 1.0  #: relative to a 6.5" phone (phones), or to the object's usual size


@dataclass(frozen=True)
class Visit:
    """A second person at ``seat``: arrives at ``t_arrive``, stays ``stay`` seconds."""

    seat: str
    t_arrive: float
    stay: float
    style: VisitStyle
    source: str


@dataclass(frozen=True)
class Absence:
    """The evaluator of ``seat`` stands up at ``t_leave``, walks out, is seated at ``t_back``."""

    seat: str
    t_leave: float
    t_back: float


@dataclass(frozen=True)
class Activity:
    """A non-incident motion of an evaluator: ``write``, ``page`` (turns pages), ``lean``."""

    seat: str
    kind: Literal["write", "page", "lean"]
    start: float
    end: float


@dataclass(frozen=True)
class Passer:
    """Someone walking along an aisle at feet row ``g``, outside every seat."""

    source: str
    t0: float
    g: float
    left_to_right: bool = True


@dataclass
class EvalClip:
    """Everything that happens in one clip of the evaluation set."""

    clip: str
    half: Half
    layout: str
    duration: float
    seed: int
    evaluators: dict[str, str]  #: seat id -> person source
    phones: list[Handheld] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    absences: list[Absence] = field(default_factory=list)
    tampers: list[Tamper] = field(default_factory=list)
    negatives: list[Handheld] = field(default_factory=list)  #: objects that are not phones
    activities: list[Activity] = field(default_factory=list)
    passers: list[Passer] = field(default_factory=list)
    dims: list[tuple[float, float]] = field(default_factory=list)  #: lights at half
    bitrate_kbps: int | None = None  #: archive rate control instead of CRF
    room_label: str = ""

    @property
    def room_id(self) -> str:
        """Room id of the room file (``eval-dev-01``)."""
        return f"eval-{self.clip.replace('_', '-')}"

    @property
    def room_name(self) -> str:
        """Display name of the room."""
        return f"评标室 {self.clip.upper()}"

    @property
    def geom(self) -> Layout:
        """The room layout."""
        return LAYOUTS[self.layout]

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return round(self.duration * FPS)

    def movers(self) -> list[Mover]:
        """Every person of the clip in a fixed order."""
        lay = self.geom
        out = []
        for i, (seat, src) in enumerate(sorted(self.evaluators.items())):
            absent = [(a.t_leave, a.t_back) for a in self.absences if a.seat == seat]
            keys = _pkeys(evaluator_keys(lay, seat, self.duration, absent))
            out.append(Mover(f"eval-{seat}", src, keys, home=seat, phase=1.7 * i + 0.3))
        for i, v in enumerate(self.visits):
            out.append(Mover(f"visitor-{i}", v.source,
                             visit_keys(lay, v.seat, v.style, v.t_arrive, v.stay), phase=4.1 + i))
        for i, p in enumerate(self.passers):
            keys = _pkeys(_passer(lay, p))
            out.append(Mover(f"passer-{i}", p.source, keys, phase=6.3 + i))
        return out

    def light(self, t: float) -> float:
        """Gain of the room light at ``t`` (1 normal, :data:`DIM_GAIN` dimmed)."""
        dim = 0.0
        for a, b in self.dims:
            if a - DIM_RAMP_S / 2 <= t <= b + DIM_RAMP_S / 2:
                dim = max(dim, min(1.0, (t - a) / DIM_RAMP_S + 0.5, (b - t) / DIM_RAMP_S + 0.5))
        return 1.0 - (1.0 - DIM_GAIN) * dim


def _passer(lay: Layout, p: Passer) -> list[Key]:
    off = 0.45 * lay.height_at(p.g)
    xa, xb = -off, WIDTH + off
    if not p.left_to_right:
        xa, xb = xb, xa
    return _path(lay, p.t0, [(xa, p.g, 0.0), (xb, p.g, 0.0)])


@dataclass(frozen=True)
class Frame:
    """Everything the renderer needs for one frame (and the truth is built from)."""

    index: int
    t: float
    people: tuple[Person, ...]
    held: tuple[tuple[Handheld, float], ...]  #: things in hand/on desk, raised 0..1
    tamper: TamperState
    light: float


def held_at(clip: EvalClip, t: float) -> list[tuple[Handheld, float]]:
    """Held things at ``t`` with how far raised they are (0 desk .. 1 held up)."""
    out = []
    for h in [*clip.phones, *clip.negatives]:
        if h.start <= t < h.end:
            u = min(1.0, (t - h.start) / 0.8, (h.end - t) / 0.8)
            out.append((h, max(0.0, u)))
    return out


def frames(clip: EvalClip, n: int | None = None) -> list[Frame]:
    """Per-frame states of the first ``n`` frames (all by default)."""
    lay = clip.geom
    movers = clip.movers()
    total = clip.n_frames if n is None else min(n, clip.n_frames)
    out = []
    for i in range(total):
        t = i / FPS
        people = tuple(p for m in movers if (p := m.at(t, lay)) is not None)
        out.append(Frame(i, t, people, tuple(held_at(clip, t)), tamper_at(clip, t),  # type: ignore[arg-type]
                         clip.light(t)))
    return out


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Incident:
    """A scripted incident: the event it must produce and its variation tags."""

    rule: str
    kind: str | None
    seat: str | None
    start: float  #: scripted window (the derived event lies inside it)
    end: float
    tags: tuple[str, ...]


def _phone_tags(h: Handheld) -> tuple[str, ...]:
    size = "phone_small" if h.size < 0.85 else "phone_large" if h.size > 1.15 else "phone_mid"
    return (f"phone_{h.style}", f"phone_{h.color}", size)


def incidents(clip: EvalClip) -> list[Incident]:
    """The scripted incidents of a clip, in time order."""
    out = [Incident("phone", None, h.seat, h.start, h.end, _phone_tags(h)) for h in clip.phones]
    for v in clip.visits:
        out.append(Incident("extra_person", None, v.seat, v.t_arrive - 4.0,
                            v.t_arrive + v.stay + 4.0, (f"extra_{v.style}",)))
    for a in clip.absences:
        out.append(Incident("seat_empty", None, a.seat, a.t_leave, a.t_back, ("seat_empty",)))
    for tp in clip.tampers:
        out.append(Incident("camera_tamper", tp.kind, None, tp.start - 0.5, tp.end + 0.5,
                            (f"tamper_{tp.kind}",)))
    return sorted(out, key=lambda i: i.start)


class ScriptError(ValueError):
    """The derived truth does not match the scripted incidents."""


def truth_events(clip: EvalClip, n: int | None = None) -> list[dict[str, object]]:
    """Ground-truth events derived from the per-frame states, each tagged with variations.

    Raises :class:`ScriptError` if the per-frame truth has an event no incident
    explains, an incident without its event, or incidents closer than MIN_GAP_S.
    """
    states = frames(clip, n)
    raw = derive_events(clip.geom, [[p.point for p in st.people] for st in states],
                        [{h.seat for h, _ in st.held if h.obj == "phone"} for st in states],
                        [st.tamper for st in states])

    end = (n if n is not None else clip.n_frames) / FPS
    wanted = [i for i in incidents(clip) if i.start < end]
    events = []
    for ev in raw:
        match = [i for i in wanted if (i.rule, i.kind, i.seat) == (ev["rule"], ev["kind"], ev["seat"])
                 and i.start - 1e-6 <= ev["start_s"] and ev["end_s"] <= i.end + 1e-6]  # type: ignore[operator]
        if len(match) != 1:
            raise ScriptError(f"{clip.clip}: event {ev} matches {len(match)} scripted incidents")
        inc = match[0]
        wanted.remove(inc)
        events.append({**ev, "variation": _conditions(clip, inc, ev)})
    if wanted and n is None:
        raise ScriptError(f"{clip.clip}: no event for {wanted}")
    for a, b in pairwise(events):
        if b["start_s"] - a["end_s"] < MIN_GAP_S:  # type: ignore[operator]
            raise ScriptError(f"{clip.clip}: only {b['start_s']} - {a['end_s']} s between {a} and {b}")
    return events


def _conditions(clip: EvalClip, inc: Incident, ev: dict[str, object]) -> list[str]:
    """Variation tags of one event: its own style plus the conditions it happened in."""
    tags = list(inc.tags)
    if inc.seat is not None:
        tags.append(seat_scale_tag(clip.geom.seat(inc.seat)))
    tags.append(CAMERA_TAG[clip.layout])
    a, b = float(ev["start_s"]), float(ev["end_s"])  # type: ignore[arg-type]
    if any(da < b and a < db for da, db in clip.dims):
        tags.append("dim")
    if clip.bitrate_kbps:
        tags.append(f"bitrate{clip.bitrate_kbps}")
    return tags


def clip_variations(clip: EvalClip, events: list[dict[str, object]]) -> list[str]:
    """Variation tags of the whole clip (sorted): its events' tags and its conditions."""
    tags = {t for ev in events for t in ev["variation"]}  # type: ignore[attr-defined]
    tags.add(CAMERA_TAG[clip.layout])
    tags |= {seat_scale_tag(s) for s in clip.geom.seats}
    if clip.dims:
        tags.add("dim" if clip.dims != [(0.0, clip.duration)] else "dim_all")
        if clip.dims == [(0.0, clip.duration)]:
            tags.add("dim")
    if clip.bitrate_kbps:
        tags.add(f"bitrate{clip.bitrate_kbps}")
    if not events:
        tags.add("control")
    tags |= {f"neg_{h.obj}_{h.style}" for h in clip.negatives}
    tags |= {f"neg_{a.kind}" for a in clip.activities}
    if clip.passers:
        tags.add("neg_passer")
    return sorted(tags)


def truth_doc(clip: EvalClip) -> dict[str, object]:
    """The ``<clip>.truth.json`` document."""
    events = truth_events(clip)
    return {
        "clip": f"{clip.clip}.mp4",
        "room": f"{clip.clip}.room.yaml",
        "fps": FPS,
        "duration_s": round(clip.n_frames / FPS, 3),
        "half": clip.half,
        "variations": clip_variations(clip, events),
        "events": events,
    }


def eval_room_doc(clip: EvalClip) -> dict[str, object]:
    """The ``<clip>.room.yaml`` document (same format as the demo rooms)."""
    return room_doc(clip, folder=f"sample_videos/evalset/{clip.half}")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the clips

#: Nominal lengths (s): a phone in use, a visitor's stay, an absence, a tamper.
PHONE_S, STAY_S, ABSENT_S, TAMPER_S = 7.0, 8.0, 13.0, 5.5
GAP_S = 7.0  #: scheduled gap between incident windows (the derived gaps are >= MIN_GAP_S)


def _seq(*items: tuple, t0: float = 4.0, tail: float = 3.5) -> dict[str, object]:
    """EvalClip fields for incidents played one after another.

    Items: ``("phone", seat, style, color, size)``, ``("visit", seat, style, source)``,
    ``("absent", seat)``, ``("tamper", kind)``; a ``moved`` tamper must come last (the
    camera stays moved until the end).
    """
    kw: dict[str, list] = {"phones": [], "visits": [], "absences": [], "tampers": []}
    t = t0
    end = t
    for it in items:
        if it[0] == "phone":
            _, seat, style, color, size = it
            kw["phones"].append(Handheld(seat, t, t + PHONE_S, style, "phone", color, size))
            end = t + PHONE_S
        elif it[0] == "visit":
            _, seat, style, src = it
            kw["visits"].append(Visit(seat, t + 1.0, STAY_S, style, src))
            end = t + STAY_S + 2.0
        elif it[0] == "absent":  # the seat is empty from ~1.5 s after standing up
            kw["absences"].append(Absence(it[1], t - 1.5, t + ABSENT_S + 1.5))
            end = t + ABSENT_S
        else:
            kind = it[1]
            length = 6.5 if kind == "moved" else 6.0 if kind == "frozen" else TAMPER_S
            kw["tampers"].append(Tamper(kind, t, t + length))
            end = t + length
        t = end + GAP_S
    duration = end + (0.0 if items[-1][1:] == ("moved",) else tail)
    return {**kw, "duration": duration}


def _clip(name: str, layout: str, seed: int, evaluators: dict[str, str], *items: tuple,
          **extra: object) -> EvalClip:
    half: Half = "dev" if name.startswith("dev") else "test"
    kw = _seq(*items)
    kw.update(extra)
    return EvalClip(clip=name, half=half, layout=layout, seed=seed, evaluators=evaluators,
                    **kw)  # type: ignore[arg-type]


def _control(name: str, layout: str, seed: int, evaluators: dict[str, str], duration: float,
             **extra: object) -> EvalClip:
    half: Half = "dev" if name.startswith("dev") else "test"
    return EvalClip(clip=name, half=half, layout=layout, seed=seed, evaluators=evaluators,
                    duration=duration, **extra)  # type: ignore[arg-type]


def _writes(*seats: str, start: float = 2.0, every: float = 17.0, n: int = 3) -> list[Activity]:
    """Evaluators writing (and, at odd turns, turning pages) now and then."""
    out = []
    for i, seat in enumerate(seats):
        for k in range(n):
            a = start + 3.1 * i + every * k
            out.append(Activity(seat, "page" if (i + k) % 2 else "write", a, a + 6.0))
    return out


def _dim(a: float, b: float) -> dict[str, object]:
    return {"dims": [(a, b)]}


BR = {"bitrate_kbps": ARCHIVE_KBPS}

CLIPS: list[EvalClip] = [
    # ------------------------------------------------------------------ dev
    _clip("dev_01", "steep2x2", 1101, {"S1": "dev_a", "S2": "dev_b", "S3": "dev_c", "S4": "dev_d"},
          ("phone", "S1", "face", "black", 1.0), ("visit", "S3", "behind", "dev_w1"),
          ("tamper", "covered"), activities=_writes("S2", "S4")),
    _clip("dev_02", "shallow3", 1102, {"S1": "dev_w2", "S2": "dev_a", "S3": "dev_b"},
          ("phone", "S2", "hands", "blue", 1.2), ("absent", "S1"), ("tamper", "defocused"),
          activities=_writes("S3")),
    _clip("dev_03", "far4", 1103,
          {"S1": "dev_c", "S2": "dev_d", "S3": "dev_a_flip", "S4": "dev_w1"},
          ("phone", "S4", "screen", "white", 1.3), ("visit", "S1", "side", "dev_w2"),
          ("absent", "S4"), activities=_writes("S2", "S3"), **BR),
    _clip("dev_04", "near2", 1104, {"S1": "dev_b", "S2": "dev_c_flip"},
          ("visit", "S2", "crouch", "dev_w1"), ("phone", "S1", "covered", "black", 0.8),
          ("tamper", "frozen"), **_dim(0.0, 100.0)),
    _clip("dev_05", "grid2x2", 1105, {"S1": "dev_d", "S2": "dev_a", "S3": "dev_b_flip", "S4": "dev_c"},
          ("phone", "S4", "face", "gold", 0.7), ("visit", "S4", "lean", "dev_w2"),
          ("phone", "S3", "desk", "gold", 1.1), ("tamper", "moved"),
          activities=_writes("S1"), **BR),
    _clip("dev_06", "row3", 1106, {"S1": "dev_b", "S2": "dev_d_flip", "S3": "dev_a"},
          ("phone", "S1", "desk", "black", 1.1), ("visit", "S3", "behind", "dev_w2"),
          ("tamper", "covered"), activities=_writes("S2"), **_dim(15.0, 33.0)),
    _clip("dev_07", "row2", 1107, {"S1": "dev_c", "S2": "dev_a_flip"},
          ("visit", "S1", "lean", "dev_w1"), ("phone", "S2", "hands", "white", 0.9),
          ("tamper", "defocused"), **BR),
    _clip("dev_08", "steep2x2", 1108, {"S1": "dev_b", "S2": "dev_c", "S3": "dev_a", "S4": "dev_w1"},
          ("absent", "S4"), ("phone", "S2", "screen", "black", 1.2), ("tamper", "frozen"),
          activities=_writes("S1", "S3")),
    _clip("dev_09", "shallow3", 1109, {"S1": "dev_d", "S2": "dev_c", "S3": "dev_b"},
          ("phone", "S3", "covered", "blue", 1.0), ("visit", "S1", "side", "dev_w1"),
          ("visit", "S3", "crouch", "dev_w2_flip"), ("tamper", "moved"), **_dim(20.0, 60.0)),
    _clip("dev_10", "far4", 1110, {"S1": "dev_w2", "S2": "dev_b", "S3": "dev_c", "S4": "dev_d"},
          ("phone", "S3", "face", "white", 1.3), ("visit", "S4", "behind", "dev_w1"),
          ("absent", "S1"), activities=_writes("S2")),
    _control("dev_11", "row3", 1111, {"S1": "dev_a", "S2": "dev_c", "S3": "dev_d"}, 45.0,
             negatives=[Handheld("S1", 4.0, 11.0, "face", "calculator"),
                        Handheld("S2", 13.0, 20.0, "face", "cup"),
                        Handheld("S3", 22.0, 30.0, "hands", "wallet"),
                        Handheld("S1", 31.0, 39.0, "desk", "stapler"),
                        Handheld("S3", 36.0, 43.0, "face", "wallet")],
             activities=[*_writes("S1", "S2", "S3", n=2), Activity("S2", "lean", 24.0, 33.0)],
             passers=[Passer("dev_w1", 16.0, 440.0), Passer("dev_w2_flip", 34.0, 445.0, False)],
             **_dim(26.0, 45.0)),
    _control("dev_12", "steep2x2", 1112, {"S1": "dev_c", "S2": "dev_a", "S3": "dev_d", "S4": "dev_b"},
             45.0,
             negatives=[Handheld("S3", 5.0, 12.0, "face", "wallet"),
                        Handheld("S1", 9.0, 16.0, "hands", "calculator"),
                        Handheld("S4", 18.0, 25.0, "face", "cup"),
                        Handheld("S2", 27.0, 34.0, "desk", "stapler"),
                        Handheld("S3", 35.0, 42.0, "hands", "stapler")],
             activities=[*_writes("S1", "S2", "S4", n=2), Activity("S4", "lean", 30.0, 38.0)],
             passers=[Passer("dev_w2", 12.0, 236.0), Passer("dev_w1_flip", 30.0, 236.0, False)],
             **BR),
    # ------------------------------------------------------------------ test
    _clip("test_01", "grid2x2", 2101, {"S1": "test_a", "S2": "test_b", "S3": "test_c", "S4": "test_d"},
          ("phone", "S2", "face", "black", 1.1), ("visit", "S4", "behind", "test_w1"),
          ("tamper", "covered"), activities=_writes("S1", "S3")),
    _clip("test_02", "far4", 2102, {"S1": "test_a", "S2": "test_b", "S3": "test_c", "S4": "test_w2"},
          ("phone", "S3", "hands", "gold", 0.8), ("absent", "S4"), ("tamper", "defocused"),
          **_dim(0.0, 100.0)),
    _clip("test_03", "shallow3", 2103, {"S1": "test_w1", "S2": "test_d", "S3": "test_b"},
          ("phone", "S1", "screen", "blue", 1.0), ("visit", "S3", "side", "test_w2"),
          ("absent", "S1"), activities=_writes("S2"), **BR),
    _clip("test_04", "row2", 2104, {"S1": "test_c", "S2": "test_a_flip"},
          ("visit", "S1", "crouch", "test_w2"), ("phone", "S2", "covered", "gold", 1.3),
          ("tamper", "frozen")),
    _clip("test_05", "steep2x2", 2105, {"S1": "test_d", "S2": "test_a", "S3": "test_b", "S4": "test_c"},
          ("phone", "S3", "face", "blue", 0.9), ("visit", "S1", "lean", "test_w1"),
          ("phone", "S4", "desk", "white", 1.2), ("tamper", "moved"),
          activities=_writes("S2"), **BR),
    _clip("test_06", "near2", 2106, {"S1": "test_b", "S2": "test_d_flip"},
          ("phone", "S2", "desk", "black", 0.7), ("visit", "S1", "behind", "test_w2"),
          ("tamper", "covered"), **_dim(14.0, 32.0)),
    _clip("test_07", "row3", 2107, {"S1": "test_a", "S2": "test_c", "S3": "test_d"},
          ("visit", "S3", "lean", "test_w2"), ("phone", "S1", "hands", "black", 1.3),
          ("tamper", "defocused"), activities=_writes("S2"), **BR),
    _clip("test_08", "grid2x2", 2108, {"S1": "test_c", "S2": "test_d", "S3": "test_w1", "S4": "test_a"},
          ("absent", "S3"), ("phone", "S1", "screen", "gold", 1.1), ("tamper", "frozen"),
          activities=_writes("S2", "S4")),
    _clip("test_09", "far4", 2109, {"S1": "test_b", "S2": "test_d", "S3": "test_a", "S4": "test_c"},
          ("phone", "S1", "covered", "white", 0.9), ("visit", "S4", "side", "test_w1"),
          ("visit", "S1", "crouch", "test_w2_flip"), ("tamper", "moved"), **_dim(20.0, 60.0)),
    _clip("test_10", "shallow3", 2110, {"S1": "test_a", "S2": "test_c", "S3": "test_w2"},
          ("phone", "S2", "face", "white", 1.2), ("visit", "S1", "behind", "test_w1"),
          ("absent", "S3"), activities=_writes("S2")),
    _control("test_11", "grid2x2", 2111, {"S1": "test_b", "S2": "test_c", "S3": "test_d", "S4": "test_a"},
             45.0,
             negatives=[Handheld("S4", 4.0, 11.0, "face", "calculator"),
                        Handheld("S1", 12.0, 19.0, "face", "cup"),
                        Handheld("S3", 21.0, 29.0, "hands", "wallet"),
                        Handheld("S2", 30.0, 37.0, "face", "wallet"),
                        Handheld("S4", 36.0, 43.0, "desk", "stapler")],
             activities=[*_writes("S1", "S2", "S3", n=2), Activity("S3", "lean", 24.0, 33.0)],
             passers=[Passer("test_w2", 15.0, 452.0), Passer("test_w1_flip", 33.0, 452.0, False)],
             **_dim(25.0, 45.0)),
    _control("test_12", "shallow3", 2112, {"S1": "test_d", "S2": "test_a", "S3": "test_c"}, 45.0,
             negatives=[Handheld("S2", 5.0, 12.0, "face", "wallet"),
                        Handheld("S3", 9.0, 16.0, "hands", "calculator"),
                        Handheld("S1", 18.0, 25.0, "face", "cup"),
                        Handheld("S2", 27.0, 34.0, "hands", "stapler"),
                        Handheld("S3", 35.0, 42.0, "desk", "stapler")],
             activities=[*_writes("S1", "S2", "S3", n=2), Activity("S1", "lean", 30.0, 38.0)],
             passers=[Passer("test_w1", 12.0, 455.0), Passer("test_w2_flip", 29.0, 455.0, False)],
             **BR),
]
# a clip dimmed "until 100 s" is dimmed all along: store the exact interval
for _c in CLIPS:
    _c.dims = [(a, min(b, _c.duration)) for a, b in _c.dims]


def clip_by_name(name: str) -> EvalClip:
    """The clip with file stem ``name``."""
    for c in CLIPS:
        if c.clip == name:
            return c
    raise KeyError(name)
