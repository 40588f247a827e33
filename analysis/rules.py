"""Seat rules: per-frame detections → debounced incidents (``extra_person``, ``phone``,
``seat_empty``, ``camera_tamper``).

Contract (all counts are in *analysed* frames of one camera, fed in time order):

* A person belongs to the seat whose polygon contains the lower centre of their box; a lower
  centre within ``seat_margin`` (normalised distance) of a polygon counts for the nearest seat.
  Anyone else is *outside every seat*.
* ``extra_person`` at a seat: more than one person there.  ``extra_person`` with seat ``None``:
  a person outside every seat, when ``RulesConfig.outside_seat_is_extra``.  Either only once
  the extra person has stayed ``extra_person_seconds`` (somebody walking past a desk or along
  the aisle is not an incident); the event then starts when they were first seen.
* ``phone`` at a seat: a phone box held by a person of that seat.  The holder is the person
  whose box contains the phone's centre or is within ``PHONE_REACH`` box widths of it (nearest
  first); the phone belongs to the holder's seat.  A phone nobody is holding, or held by someone
  outside every seat, is unattributed and raises nothing (phones lying on a desk, false boxes
  on badges or papers).
* Debounce (:class:`Debouncer`): an incident opens once ``open_k`` of the last ``open_n`` frames
  are positive (start = first positive frame in that window), and closes after ``close_m``
  consecutive clear frames (end = last positive frame).  One event per incident.
* ``seat_empty``: nobody has been seen at the seat in any analysed frame for at least
  ``seat_empty_seconds`` (a detector that misses a seated person now and then cannot raise it);
  the event starts at the first frame without anyone and closes when someone is back in
  ``open_k`` of the last ``open_n`` frames (end = the last frame without anyone).
  Confidence = the fraction of frames without anyone during the event.
* Sessions (:meth:`CameraRules.set_session`): while an evaluation session runs in the room,
  only its *assigned* seats are armed for ``seat_empty`` and ``extra_person`` (more than one
  person); any person at an *unassigned* seat raises ``extra_person`` for that seat, and a
  person outside every seat raises ``extra_person`` with seat ``None`` (when
  ``outside_seat_is_extra``).  Events opened meanwhile carry the session's id.  Without a
  running session every configured seat is armed (the behaviour before sessions existed; the
  demo and ``evalwatch analyze`` run that way).
* ``camera_tamper``: each kind reported by :mod:`analysis.tamper` is debounced like the others.
  While any tamper incident is open the seat rules are suspended (their state is frozen): the
  picture cannot be trusted, and the tamper alert is the one a supervisor needs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from analysis.events import Event, EventUpdate
from config.models import RulesConfig, SeatConfig

PERSON = "person"
PHONE = "cell phone"
# Footage an auditor should see around an incident.
FOOTAGE_PRE_S = 5.0
FOOTAGE_POST_S = 5.0
# Publish "updated" only when the peak confidence rose by this much.
UPDATE_STEP = 0.1
#: A phone is held by a person whose box contains its centre or is within this many box widths
#: of it (a hand held out); a phone nobody can be holding (on a desk, a badge, a false box far
#: from anyone) raises nothing.
PHONE_REACH = 0.35


class BoxLike(Protocol):
    """What the rules need of a detector box (``analysis.detectors.Box``), normalised 0..1;
    read-only, so frozen boxes satisfy it."""

    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def x1(self) -> float: ...
    @property
    def y1(self) -> float: ...
    @property
    def x2(self) -> float: ...
    @property
    def y2(self) -> float: ...


Point = tuple[float, float]


# --- geometry ---------------------------------------------------------------------------------


def point_in_polygon(p: Point, poly: Sequence[Point]) -> bool:
    """Ray casting; points on the boundary may go either way."""
    x, y = p
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xc:
                inside = not inside
    return inside


def _seg_dist(p: Point, a: Point, b: Point) -> float:
    ax, ay = a
    bx, by = b
    px, py = p
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def polygon_distance(p: Point, poly: Sequence[Point]) -> float:
    """0 inside the polygon, else the distance to its boundary."""
    if point_in_polygon(p, poly):
        return 0.0
    return min(_seg_dist(p, poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly)))


def box_polygon_overlap(box: BoxLike, poly: Sequence[Point], samples: int = 5) -> float:
    """Fraction of a ``samples`` x ``samples`` grid over the box that falls inside ``poly``."""
    hits = 0
    for i in range(samples):
        for j in range(samples):
            x = box.x1 + (i + 0.5) / samples * (box.x2 - box.x1)
            y = box.y1 + (j + 0.5) / samples * (box.y2 - box.y1)
            hits += point_in_polygon((x, y), poly)
    return hits / (samples * samples)


def lower_centre(box: BoxLike) -> Point:
    return ((box.x1 + box.x2) / 2.0, box.y2)


def centre(box: BoxLike) -> Point:
    return ((box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0)


@dataclass
class SeatAssignment:
    """People per seat, people outside every seat, and phones per seat, for one frame."""

    people: dict[str, list[BoxLike]]
    outside: list[BoxLike]
    phones: dict[str, list[BoxLike]]
    unattributed_phones: list[BoxLike]


def seat_of_person(box: BoxLike, seats: Sequence[SeatConfig], margin: float = 0.0) -> str | None:
    """The seat containing the box's lower centre (or nearest within ``margin``), else None."""
    p = lower_centre(box)
    best: tuple[float, str] | None = None
    for s in seats:
        d = polygon_distance(p, s.polygon)
        if d == 0.0:
            return s.id
        if d <= margin and (best is None or d < best[0]):
            best = (d, s.id)
    return None if best is None else best[1]


def _box_gap(p: Point, box: BoxLike) -> float:
    """0 when ``p`` is inside ``box``, else its distance to the box."""
    dx = max(box.x1 - p[0], 0.0, p[0] - box.x2)
    dy = max(box.y1 - p[1], 0.0, p[1] - box.y2)
    return math.hypot(dx, dy)


def holder_of_phone(
    box: BoxLike, people: Sequence[tuple[BoxLike, str | None]], reach: float = PHONE_REACH
) -> tuple[BoxLike, str | None] | None:
    """The person who can be holding the phone ``box``: the person box containing the phone's
    centre, or within ``reach`` x that box's width of it (an arm held out), nearest first;
    None when nobody is within reach."""
    c = centre(box)
    cands = [(_box_gap(c, pb), math.dist(c, centre(pb)), i) for i, (pb, _) in enumerate(people)
             if _box_gap(c, pb) <= reach * max(pb.x2 - pb.x1, 1e-6)]
    if not cands:
        return None
    return people[min(cands)[2]]


def seat_of_phone(
    box: BoxLike, seats: Sequence[SeatConfig], people: Sequence[tuple[BoxLike, str | None]],
    reach: float = PHONE_REACH, desk_min: float | None = None,
) -> str | None:
    """See the module contract: the seat of the person holding the phone; a phone nobody holds
    belongs to the seat whose polygon contains its centre when its score is at least
    ``desk_min`` (a phone lying on that desk), else to no seat."""
    if not seats:
        return None
    held = holder_of_phone(box, people, reach)
    if held is not None:
        return held[1]
    if desk_min is None or box.score < desk_min:
        return None
    c = centre(box)
    return next((s.id for s in seats if point_in_polygon(c, s.polygon)), None)


def assign(
    boxes: Sequence[BoxLike], seats: Sequence[SeatConfig], *, seat_margin: float = 0.0,
    desk_phone_min: float | None = None,
) -> SeatAssignment:
    """Attribute every person and phone box of one frame to seats (module contract)."""
    people: dict[str, list[BoxLike]] = {s.id: [] for s in seats}
    phones: dict[str, list[BoxLike]] = {s.id: [] for s in seats}
    outside: list[BoxLike] = []
    loose: list[BoxLike] = []
    person_seats: list[tuple[BoxLike, str | None]] = []
    for b in boxes:
        if b.label == PERSON:
            sid = seat_of_person(b, seats, seat_margin)
            person_seats.append((b, sid))
            (people[sid] if sid is not None else outside).append(b)
    for b in boxes:
        if b.label == PHONE:
            sid = seat_of_phone(b, seats, person_seats, desk_min=desk_phone_min)
            (phones[sid] if sid is not None else loose).append(b)
    return SeatAssignment(people, outside, phones, loose)


# --- debounce ---------------------------------------------------------------------------------


class Debouncer:
    """K-of-N to open, M consecutive clear frames to close (module contract).

    :meth:`update` returns ``"open"``, ``"close"`` or ``None``.  ``start_s`` / ``end_s`` /
    ``peak`` describe the current (or last) incident.
    """

    def __init__(self, k: int, n: int, m: int):
        if not 1 <= k <= n or m < 1:
            raise ValueError(f"need 1 <= k <= n and m >= 1, got k={k} n={n} m={m}")
        self.k, self.n, self.m = k, n, m
        self.window: deque[tuple[float, bool]] = deque(maxlen=n)
        self.active = False
        self.clear_run = 0
        self.start_s = 0.0
        self.end_s = 0.0
        self.last_positive_s = 0.0
        self.peak = 0.0
        self.positives = 0
        self.frames = 0

    def update(self, t: float, positive: bool, confidence: float = 1.0) -> str | None:
        if not self.active:
            self.window.append((t, positive))
            if positive and sum(p for _, p in self.window) >= self.k:
                self.active = True
                self.start_s = next(tt for tt, p in self.window if p)
                self.last_positive_s = t
                self.clear_run = 0
                self.peak = confidence
                self.positives = sum(p for _, p in self.window)
                self.frames = len(self.window) - [p for _, p in self.window].index(True)
                return "open"
            return None
        self.frames += 1
        if positive:
            self.clear_run = 0
            self.last_positive_s = t
            self.positives += 1
            self.peak = max(self.peak, confidence)
            return None
        self.clear_run += 1
        if self.clear_run >= self.m:
            self.active = False
            self.end_s = self.last_positive_s
            self.window.clear()
            return "close"
        return None

    @property
    def ratio(self) -> float:
        """Fraction of positive frames since the incident opened (from its first positive)."""
        return self.positives / max(1, self.frames)


# --- the per-camera rule engine ---------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    """What the rules need of a running evaluation session: its id and the seats assigned to
    experts in this room (``sessions.lifecycle.ActiveSession`` reduced)."""

    session_id: int
    seats: frozenset[str]


SnapshotFn = Callable[[str, str | None, str | None], bytes | None]


@dataclass
class _Track:
    rule: str
    seat: str | None
    kind: str | None
    deb: Debouncer
    event: Event | None = None
    published_conf: float = 0.0


@dataclass
class _Absence:
    """``seat_empty`` state of one seat."""

    absent_from: float | None = None
    last_absent: float = 0.0
    frames: int = 0
    empty_frames: int = 0
    event: Event | None = None
    window: deque[bool] = field(default_factory=lambda: deque(maxlen=5))

    @property
    def ratio(self) -> float:
        return self.empty_frames / max(1, self.frames)


class CameraRules:
    """Rule state of one camera.  Feed it every analysed frame with :meth:`update`.

    ``snapshot`` (optional) is called as ``snapshot(rule, seat, kind)`` when an event opens and
    returns JPEG bytes for it (it renders the frame currently being processed).
    """

    def __init__(
        self,
        camera: str,
        seats: Sequence[SeatConfig],
        cfg: RulesConfig,
        *,
        room: str | None = None,
        site: str | None = None,
        seat_margin: float = 0.02,
    ):
        self.camera = camera
        self.seats = list(seats)
        self.cfg = cfg
        self.room = room
        self.site = site
        self.seat_margin = seat_margin
        self._tracks: dict[tuple[str, str | None, str | None], _Track] = {}
        self._absence: dict[str, _Absence] = {}
        self.last_t: float | None = None
        self.last_assignment: SeatAssignment | None = None
        self.session: SessionView | None = None
        self._extra_since: dict[str | None, float] = {}
        self._extra_gap: dict[str | None, int] = {}

    # -- sessions --

    @property
    def armed_seats(self) -> set[str]:
        """Seats whose occupant is expected: the session's assigned seats, or every seat
        when no session runs."""
        if self.session is None:
            return {s.id for s in self.seats}
        return {s.id for s in self.seats if s.id in self.session.seats}

    def set_session(self, session: SessionView | None) -> list[EventUpdate]:
        """Arm the rules for a running session (``None``: no session, every seat armed).

        A seat that stops being armed has its ``seat_empty`` incident closed (at its last
        empty frame) and its absence state dropped; a seat that becomes armed starts counting
        absence from its next frame.  Other incidents carry on (their criterion changes from
        the next frame).  Returns the updates this caused.
        """
        if session == self.session:
            return []
        before = self.armed_seats
        self.session = session
        after = self.armed_seats
        out: list[EventUpdate] = []
        for seat in sorted(before - after):
            st = self._absence.pop(seat, None)
            if st is not None and st.event is not None:
                end = st.last_absent if self.last_t is None else min(self.last_t, st.last_absent)
                out.append(EventUpdate("closed", self._close(st.event, end, st.ratio)))
        for seat in after - before:
            self._absence.pop(seat, None)
        return out

    def _new_absence(self) -> _Absence:
        return _Absence(window=deque(maxlen=self.cfg.open_n))

    def _deb(self) -> Debouncer:
        return Debouncer(self.cfg.open_k, self.cfg.open_n, self.cfg.close_m)

    def _track(self, rule: str, seat: str | None, kind: str | None = None) -> _Track:
        key = (rule, seat, kind)
        tr = self._tracks.get(key)
        if tr is None:
            tr = self._tracks[key] = _Track(rule, seat, kind, self._deb())
        return tr

    @property
    def tampered(self) -> bool:
        """True while a camera_tamper incident is open on this camera."""
        return any(tr.event is not None for (rule, _, _), tr in self._tracks.items()
                   if rule == "camera_tamper")

    def open_events(self) -> list[Event]:
        out = [tr.event for tr in self._tracks.values() if tr.event is not None]
        out += [st.event for st in self._absence.values() if st.event is not None]
        return out

    # -- feeding --

    def update(
        self,
        t: float,
        boxes: Sequence[BoxLike] | None,
        tamper: dict[str, float] | None = None,
        snapshot: SnapshotFn | None = None,
        tamper_onsets: dict[str, float] | None = None,
    ) -> list[EventUpdate]:
        """Feed one analysed frame at time ``t``.

        ``boxes`` are the detections of this frame (``None`` = not available: seat rules are not
        fed).  ``tamper`` maps a tamper kind to its confidence for the kinds present in this
        frame (absent kinds are clear).  ``tamper_onsets`` maps a kind to when its condition
        began, for kinds reported only after a delay (``frozen``); an event opening now starts
        there.  Returns the event updates this frame caused.
        """
        self.last_t = t
        out: list[EventUpdate] = []
        tamper = tamper or {}
        onsets = tamper_onsets or {}
        for kind in ("covered", "defocused", "moved", "frozen"):
            conf = tamper.get(kind)
            self._feed(self._track("camera_tamper", None, kind), t, conf is not None, conf or 0.0,
                       snapshot, out, onset=onsets.get(kind) if conf is not None else None)
        if boxes is None or self.tampered:
            return out
        a = assign(boxes, self.seats, seat_margin=self.seat_margin,
                   desk_phone_min=self.cfg.desk_phone_min_score)
        self.last_assignment = a
        armed = self.armed_seats
        for s in self.seats:
            ppl = sorted(a.people[s.id], key=lambda b: -b.score)
            # an armed seat holds one person; an unassigned seat during a session holds nobody
            allowed = 1 if s.id in armed else 0
            extra = self._lasting(s.id, t, len(ppl) > allowed)
            self._feed(self._track("extra_person", s.id), t, extra, ppl[allowed].score if extra else 0.0,
                       snapshot, out, onset=self._extra_since.get(s.id) if extra else None)
            ph = a.phones[s.id]
            self._feed(self._track("phone", s.id), t, bool(ph), max((b.score for b in ph), default=0.0),
                       snapshot, out)
            if s.id in armed:
                self._feed_empty(s.id, t, not ppl, snapshot, out)
        if self.cfg.outside_seat_is_extra:
            outs = a.outside
            lasting = self._lasting(None, t, bool(outs))
            self._feed(self._track("extra_person", None), t, lasting,
                       max((b.score for b in outs), default=0.0), snapshot, out,
                       onset=self._extra_since.get(None) if lasting else None)
        return out

    def _lasting(self, seat: str | None, t: float, present: bool) -> bool:
        """Whether an extra person has been there (at ``seat``; None = outside every seat) for
        ``extra_person_seconds``: somebody walking past a desk or along the aisle passes, one
        who stays is an incident (which starts when they were first seen).  Gaps shorter than
        ``close_m`` frames (a missed detection) do not restart the count."""
        if present:
            self._extra_gap[seat] = 0
            since = self._extra_since.setdefault(seat, t)
            return t - since >= self.cfg.extra_person_seconds
        self._extra_gap[seat] = self._extra_gap.get(seat, 0) + 1
        if self._extra_gap[seat] >= self.cfg.close_m:
            self._extra_since.pop(seat, None)
        return False

    def _new_event(self, rule: str, seat: str | None, kind: str | None, start: float, conf: float,
                   snapshot: SnapshotFn | None) -> Event:
        ev = Event(rule=rule, camera=self.camera, seat=seat, kind=kind, start_s=start,
                   confidence=conf, room=self.room, site=self.site,
                   footage_start_s=start - FOOTAGE_PRE_S,
                   session_id=None if self.session is None else self.session.session_id)
        if snapshot is not None:
            ev.snapshot = snapshot(rule, seat, kind)
        return ev

    def _feed(self, tr: _Track, t: float, positive: bool, conf: float,
              snapshot: SnapshotFn | None, out: list[EventUpdate], onset: float | None = None) -> None:
        r = tr.deb.update(t, positive, conf)
        if r == "open":
            if onset is not None and onset < tr.deb.start_s:
                tr.deb.start_s = onset  # the condition began before it could be reported
            tr.event = self._new_event(tr.rule, tr.seat, tr.kind, tr.deb.start_s, tr.deb.peak, snapshot)
            tr.published_conf = tr.event.confidence
            out.append(EventUpdate("opened", tr.event))
        elif r == "close" and tr.event is not None:
            out.append(EventUpdate("closed", self._close(tr.event, tr.deb.end_s, tr.deb.peak)))
            tr.event = None
        elif tr.event is not None and tr.deb.peak >= tr.published_conf + UPDATE_STEP:
            tr.event.confidence = tr.deb.peak
            tr.published_conf = tr.deb.peak
            out.append(EventUpdate("updated", tr.event))

    def _close(self, ev: Event, end: float, conf: float) -> Event:
        ev.end_s = max(end, ev.start_s)
        ev.confidence = max(ev.confidence, conf)
        ev.footage_end_s = ev.end_s + FOOTAGE_POST_S
        return ev

    def _feed_empty(self, seat: str, t: float, empty: bool, snapshot: SnapshotFn | None,
                    out: list[EventUpdate]) -> None:
        st = self._absence.get(seat) or self._absence.setdefault(seat, self._new_absence())
        if st.event is None:
            if not empty:
                st.absent_from = None
                return
            if st.absent_from is None:
                st.absent_from = t
                st.frames = st.empty_frames = 0
            st.frames += 1
            st.empty_frames += 1
            st.last_absent = t
            if t - st.absent_from >= self.cfg.seat_empty_seconds:
                st.event = self._new_event("seat_empty", seat, None, st.absent_from, 1.0, snapshot)
                out.append(EventUpdate("opened", st.event))
            return
        st.frames += 1
        st.window.append(not empty)
        if empty:
            st.empty_frames += 1
            st.last_absent = t
        if sum(st.window) >= self.cfg.open_k:  # back: open_k of the last open_n frames
            out.append(EventUpdate("closed", self._close(st.event, st.last_absent, st.ratio)))
            self._absence[seat] = self._new_absence()

    def finish(self, t: float | None = None) -> list[EventUpdate]:
        """Close every open incident (end = its last positive frame, at most ``t``); end of input."""
        out: list[EventUpdate] = []
        for tr in self._tracks.values():
            if tr.event is not None:
                end = tr.deb.last_positive_s if t is None else min(t, tr.deb.last_positive_s)
                out.append(EventUpdate("closed", self._close(tr.event, end, tr.deb.peak)))
                tr.event = None
        for seat, st in self._absence.items():
            if st.event is not None:
                end = st.last_absent if t is None else min(t, st.last_absent)
                out.append(EventUpdate("closed", self._close(st.event, end, st.ratio)))
                self._absence[seat] = self._new_absence()
        return out
