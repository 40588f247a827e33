"""Random seat assignment for bid evaluation (``evalwatch seats assign INPUT [--seed N] [--json]``).

The trading centre seats the experts of every bid at random so that experts of the same bid sit
in different rooms and nobody sits next to anyone.

Input (YAML or JSON; chosen by the file extension, otherwise by content)::

    rooms:
      - id: R1
        seats: [{id: A1, row: 1, col: 1}, {id: A2, row: 1, col: 2}, ...]
    bids:
      - id: B1
        experts: [E1, E2, E3]

Ids may be strings or integers; they are normalised to strings.  Seat ids must be unique within
their room (rooms may reuse seat names such as ``A1``), seat positions must be unique within a
room, room / bid ids must be unique, and every expert appears exactly once over all bids.

Contract of :func:`assign_seats` (and therefore of the command):

* **Non-adjacency.**  Two assigned seats of the same room are never adjacent, where adjacent
  means ``|Δrow| <= 1 and |Δcol| <= 1`` (king moves, diagonals included).  Seats in different
  rooms never interact.
* **Every expert exactly once, no seat twice.**
* **Bids spread over rooms.**  Let ``R`` be the number of rooms and ``L_b = ceil(size_b / R)``
  the per-room lower bound of bid ``b`` (``L_b = 1`` when the bid has at most ``R`` experts, i.e.
  all of its experts in different rooms).  Whenever the room capacities allow every bid to stay
  at its bound simultaneously — the normal case — each bid has at most ``L_b`` experts in any
  room, which is the best possible for that bid.  When capacities do not allow it (a few rooms
  hold most of the non-adjacent seats), the per-bid caps ``c_b`` are chosen as follows: first the
  largest cap ``M = max_b c_b`` is minimised; then, bids taken from the smallest to the largest
  (ties in input order), each cap is lowered as far as the others allow.  The result is
  Pareto-minimal: no single bid's cap can be lowered without raising another one's.  Such bids
  are reported in :attr:`Assignment.warnings`.
* **Capacity.**  The capacity of a room is the size of a maximum set of pairwise non-adjacent
  seats, computed exactly by a broken-profile dynamic programme over the (coordinate-compressed)
  seat grid, so irregular layouts with gaps, aisles and missing seats are handled.  A room can
  take any number of experts up to its capacity, hence the room level is a flow problem that is
  solved exactly: a valid assignment is always found when one exists.  The DP costs about
  ``1.7 ** width`` per seat, where width is the narrower side of the layout; rooms whose
  narrower side spans more than ``MAX_LAYOUT_WIDTH`` (20) rows/columns are refused with a clear
  error instead of running for minutes.
* **Randomness.**  All randomness comes from ``random.Random(seed)``; iteration orders are
  fixed by the input order, so the same input and seed give the same result on every run and
  machine (CPython 3.11+).  What is guaranteed about the distribution:

  1. *Expert → room.*  Each bid's experts are spread over the rooms by exact uniform sampling
     among the spreads within its cap ``c_b`` (counting DP), and the joint draw is accepted only
     if no room is over capacity (rejection, at most ``_MAX_ROOM_TRIES`` draws).  On acceptance
     the expert → room map is **exactly uniform** among all valid maps (``room_sampling ==
     "uniform"``).  If every draw is rejected (rooms nearly full), a flow-guided sequential
     construction takes over: experts in random order, each to a uniformly chosen room among
     those that keep the rest solvable.  That always succeeds but is *not* exactly uniform
     (``room_sampling == "guided"``).
  2. *Room → seats.*  Given the ``n`` experts of a room, a set of ``n`` pairwise non-adjacent
     seats is drawn **exactly uniformly** among all such sets — by rejection (uniform random
     ``n`` seats until non-adjacent, at most ``_MAX_SEAT_TRIES`` draws), else by a counting DP
     with backward sampling — and the experts are matched to those seats by a uniform random
     permutation.

  The composition is uniform over room maps and, given the map, uniform over seatings; it is not
  uniform over complete seat assignments, which would favour rooms with more seat patterns.

* **Audit.**  The seed is part of the result (:attr:`Assignment.seed`, ``"seed"`` in the JSON)
  so that the draw can be reproduced.  This module writes no audit entry itself: the hub records
  the seed and the result in its audit log when it runs a seating.

Errors: malformed input raises :class:`InputError`, an impossible seating raises
:class:`InfeasibleError` (the former is a subclass of the latter), each with a message naming the
file / field / room at fault.  The command (:mod:`evalwatch.seats`) prints that message and exits with code 2.
"""

from __future__ import annotations

import json
import math
import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictInt, ValidationError

__all__ = [
    "Assignment",
    "Bid",
    "InfeasibleError",
    "InputError",
    "Room",
    "Seat",
    "SeatAssignment",
    "assign_seats",
    "format_table",
    "load_input",
    "room_capacity",
]

#: Joint expert → room draws tried before falling back to the guided construction.
_MAX_ROOM_TRIES = 200
#: Uniform random seat subsets tried in a room before the exact counting DP draws its seats.
_MAX_SEAT_TRIES = 200
#: The exact DP grows like ~1.7 ** width, where width is the narrower side of a room's layout
#: (rows or columns, after closing gaps); wider rooms are refused with an explanation.
MAX_LAYOUT_WIDTH = 20


class InfeasibleError(ValueError):
    """The experts cannot be seated; the message says why (room, bid, expert or field)."""


class InputError(InfeasibleError):
    """The input is malformed (unreadable file, missing field, duplicate id, ...)."""


# ----------------------------------------------------------------------------------- models


def _to_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer id, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return value
    raise ValueError("must be a string or an integer id")


Id = Annotated[str, BeforeValidator(_to_id)]


class Seat(BaseModel):
    """One seat of a room at grid position (``row``, ``col``)."""

    model_config = ConfigDict(frozen=True)
    id: Id
    row: StrictInt
    col: StrictInt


class Room(BaseModel):
    """An evaluation room and its seats (any layout; positions unique within the room)."""

    model_config = ConfigDict(frozen=True)
    id: Id
    seats: list[Seat]


class Bid(BaseModel):
    """A bid and the experts evaluating it."""

    model_config = ConfigDict(frozen=True)
    id: Id
    experts: list[Id]


class SeatingInput(BaseModel):
    """The whole input file."""

    rooms: list[Room]
    bids: list[Bid]


class SeatAssignment(BaseModel):
    """Where one expert sits."""

    expert: str
    bid: str
    room: str
    seat: str


class Assignment(BaseModel):
    """Result of :func:`assign_seats`.

    ``assignments`` is in input order (bids, then experts within a bid).  ``max_per_room`` maps
    each bid to the largest number of its experts sharing a room.  ``warnings`` lists bids that
    had to exceed ``ceil(size / #rooms)`` because of room capacities.
    """

    seed: int
    assignments: list[SeatAssignment]
    max_per_room: dict[str, int]
    room_sampling: Literal["uniform", "guided"]
    warnings: list[str]

    def to_json_dict(self) -> dict[str, Any]:
        """The documented JSON output: ``{"seed": ..., "assignments": [...]}``."""
        return {"seed": self.seed, "assignments": [a.model_dump() for a in self.assignments]}


# ------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Grid:
    """Seats of one room on a compressed grid, oriented so that ``width <= height``.

    Coordinates are compressed (runs of empty rows/columns shrink to a single empty line, which
    preserves adjacency) and cell ``r * width + c`` holds seat index ``cells[...]``.
    """

    width: int
    height: int
    cells: dict[int, int]


def _compress(values: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    prev: int | None = None
    pos = 0
    for v in sorted(set(values)):
        if prev is not None:
            pos += 1 if v - prev == 1 else 2
        out[v] = pos
        prev = v
    return out


def _grid(seats: Sequence[Seat]) -> _Grid:
    if not seats:
        return _Grid(1, 0, {})
    rows = _compress(s.row for s in seats)
    cols = _compress(s.col for s in seats)
    coords = [(rows[s.row], cols[s.col]) for s in seats]
    height, width = max(rows.values()) + 1, max(cols.values()) + 1
    if width > height:
        coords = [(c, r) for r, c in coords]
        height, width = width, height
    return _Grid(width, height, {r * width + c: i for i, (r, c) in enumerate(coords)})


def _blocked(mask: int, c: int, w: int) -> bool:
    """Whether the cell at column ``c`` has a selected neighbour among the last ``w + 1`` cells.

    Bit ``j`` of ``mask`` is the cell ``j + 1`` positions back in row-major order: bit 0 is the
    left neighbour, bits ``w - 2``, ``w - 1`` and ``w`` are up-right, up and up-left.
    """
    if (mask >> (w - 1)) & 1:
        return True
    if c > 0 and (mask & 1 or (mask >> w) & 1):
        return True
    return c < w - 1 and bool((mask >> (w - 2)) & 1)


def _max_independent(grid: _Grid) -> int:
    w = grid.width
    full = (1 << (w + 1)) - 1
    states: dict[int, int] = {0: 0}
    for i in range(grid.height * w):
        c = i % w
        seat = i in grid.cells
        new: dict[int, int] = {}
        for mask, val in states.items():
            m0 = (mask << 1) & full
            if new.get(m0, -1) < val:
                new[m0] = val
            if seat and not _blocked(mask, c, w):
                m1 = m0 | 1
                if new.get(m1, -1) < val + 1:
                    new[m1] = val + 1
        states = new
    return max(states.values())


def _weighted_choice(rng: random.Random, items: Sequence[tuple[Any, int]]) -> Any:
    total = sum(wt for _, wt in items)
    if total <= 0:
        raise AssertionError("internal error: nothing to choose from")
    x = rng.randrange(total)
    for item, wt in items:
        if x < wt:
            return item
        x -= wt
    raise AssertionError("unreachable")


def _sample_independent(grid: _Grid, n: int, rng: random.Random) -> list[int]:
    """Seat indices of a uniformly random set of ``n`` pairwise non-adjacent seats.

    Forward pass: for every profile state, the number of partial selections by size, as a
    polynomial packed into one integer (slot ``k`` = ``bits`` bits at offset ``k * bits``; a slot
    never overflows because no count exceeds ``2 ** #seats``).  Backward pass: walk the states
    back from the end choosing predecessors in proportion to their counts, which draws every
    size-``n`` selection with the same probability.
    """
    if n == 0:
        return []
    w = grid.width
    full = (1 << (w + 1)) - 1
    ncells = grid.height * w
    bits = len(grid.cells) + 1
    slot = (1 << bits) - 1
    keep = (1 << (bits * (n + 1))) - 1
    tables: list[dict[int, int]] = [{0: 1}]
    for i in range(ncells):
        c = i % w
        seat = i in grid.cells
        new: dict[int, int] = {}
        for mask, poly in tables[-1].items():
            m0 = (mask << 1) & full
            new[m0] = new.get(m0, 0) + poly
            if seat and not _blocked(mask, c, w):
                m1 = m0 | 1
                new[m1] = new.get(m1, 0) + ((poly << bits) & keep)
        tables.append(new)

    def coef(poly: int, k: int) -> int:
        return (poly >> (k * bits)) & slot

    state = _weighted_choice(rng, [(m, coef(p, n)) for m, p in tables[ncells].items() if coef(p, n)])
    k = n
    chosen: list[int] = []
    for i in range(ncells - 1, -1, -1):
        sel = state & 1
        if sel:
            chosen.append(grid.cells[i])
            k -= 1
        c = i % w
        options: list[tuple[int, int]] = []
        for top in (0, 1):
            prev = (state >> 1) | (top << w)
            before = tables[i].get(prev)
            if before is None or (sel and _blocked(prev, c, w)):
                continue
            count = coef(before, k)
            if count:
                options.append((prev, count))
        state = _weighted_choice(rng, options)
    return sorted(chosen)


def _sample_sparse(seats: Sequence[Seat], n: int, rng: random.Random) -> list[int] | None:
    """Uniform random ``n`` seats, retried until non-adjacent (``None`` after the last try).

    A uniform ``n``-subset conditioned on being independent is uniform over independent
    ``n``-subsets, so this is exact; it is fast when the room is far from full.
    """
    pos = [(s.row, s.col) for s in seats]
    indices = range(len(seats))
    for _ in range(_MAX_SEAT_TRIES):
        pick = rng.sample(indices, n)
        taken = {pos[i] for i in pick}
        if not any(
            (pos[i][0] + dr, pos[i][1] + dc) in taken
            for i in pick
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if dr or dc
        ):
            return sorted(pick)
    return None


def _room_grid(room: Room) -> _Grid:
    grid = _grid(room.seats)
    if grid.width > MAX_LAYOUT_WIDTH:
        raise InputError(
            f"room {room.id}: seat layout too large to seat exactly ({grid.height} x {grid.width} grid "
            f"after closing gaps; the narrower side may span at most {MAX_LAYOUT_WIDTH}) — "
            "split the room into sections"
        )
    return grid


@lru_cache(maxsize=256)
def _capacity_of(positions: tuple[tuple[int, int], ...]) -> int:
    seats = [Seat(id=str(i), row=r, col=c) for i, (r, c) in enumerate(positions)]
    return _max_independent(_grid(seats))


def room_capacity(room: Room) -> int:
    """Largest number of pairwise non-adjacent (king-move) seats of ``room``; exact.

    Raises :class:`InputError` for layouts wider than ``MAX_LAYOUT_WIDTH`` in both directions.
    """
    _room_grid(room)
    return _capacity_of(tuple((s.row, s.col) for s in room.seats))


# ----------------------------------------------------------------------------- room level


def _max_flow_uniform(sizes: Sequence[int], caps: Sequence[int], limits: Sequence[int]) -> int:
    """Max flow of source → bid b (``sizes[b]``) → every room (``limits[b]``) → sink (``caps``).

    By max-flow/min-cut, with ``a`` rooms cut at the sink (best: the ``a`` smallest) the cut is
    ``sum(a smallest caps) + sum_b min(size_b, limit_b * (R - a))``.
    """
    ordered = sorted(caps)
    best = None
    prefix = 0
    nrooms = len(caps)
    for a in range(nrooms + 1):
        if a:
            prefix += ordered[a - 1]
        cut = prefix + sum(min(s, lim * (nrooms - a)) for s, lim in zip(sizes, limits, strict=True))
        best = cut if best is None else min(best, cut)
    return 0 if best is None else best


def _bid_caps(sizes: Sequence[int], caps: Sequence[int]) -> list[int]:
    """Per-bid caps on experts per room (see the module docstring for the objective)."""
    nrooms = len(caps)
    total = sum(sizes)
    if not sizes or total == 0:
        return [0] * len(sizes)

    def ok(limits: Sequence[int]) -> bool:
        return _max_flow_uniform(sizes, caps, limits) >= total

    lower = [math.ceil(s / nrooms) for s in sizes]
    lo, hi = max(lower), max(sizes)
    while lo < hi:  # smallest M with caps min(M, size) feasible; M = max(sizes) is feasible
        mid = (lo + hi) // 2
        if ok([min(mid, s) for s in sizes]):
            hi = mid
        else:
            lo = mid + 1
    limits = [min(lo, s) for s in sizes]
    for b in sorted(range(len(sizes)), key=lambda i: (sizes[i], i)):
        lo_b, hi_b = lower[b], limits[b]
        while lo_b < hi_b:
            mid = (lo_b + hi_b) // 2
            trial = list(limits)
            trial[b] = mid
            if ok(trial):
                hi_b = mid
            else:
                lo_b = mid + 1
        limits[b] = lo_b
    return limits


def _spread_table(k: int, limits: Sequence[int]) -> list[list[int]]:
    """``f[r][m]``: ways to put ``m`` labelled experts into rooms ``r..`` within ``limits``."""
    nrooms = len(limits)
    f = [[0] * (k + 1) for _ in range(nrooms + 1)]
    f[nrooms][0] = 1
    for r in range(nrooms - 1, -1, -1):
        for m in range(k + 1):
            f[r][m] = sum(math.comb(m, j) * f[r + 1][m - j] for j in range(min(limits[r], m) + 1))
    return f


def _sample_spread(k: int, limits: Sequence[int], f: list[list[int]], rng: random.Random) -> list[int]:
    counts: list[int] = []
    m = k
    for r in range(len(limits)):
        opts = [(j, math.comb(m, j) * f[r + 1][m - j]) for j in range(min(limits[r], m) + 1)]
        j = _weighted_choice(rng, [o for o in opts if o[1]])
        counts.append(j)
        m -= j
    return counts


class _Dinic:
    def __init__(self, n: int) -> None:
        self.adj: list[list[int]] = [[] for _ in range(n)]
        self.to: list[int] = []
        self.cap: list[int] = []

    def edge(self, u: int, v: int, c: int) -> None:
        self.adj[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(c)
        self.adj[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0)

    def flow(self, s: int, t: int) -> int:
        total = 0
        n = len(self.adj)
        while True:
            level = [-1] * n
            level[s] = 0
            queue = [s]
            for u in queue:
                for e in self.adj[u]:
                    if self.cap[e] > 0 and level[self.to[e]] < 0:
                        level[self.to[e]] = level[u] + 1
                        queue.append(self.to[e])
            if level[t] < 0:
                return total
            it = [0] * n

            def push(u: int, f: int, level: list[int] = level, it: list[int] = it) -> int:
                if u == t:
                    return f
                while it[u] < len(self.adj[u]):
                    e = self.adj[u][it[u]]
                    v = self.to[e]
                    if self.cap[e] > 0 and level[v] == level[u] + 1:
                        d = push(v, min(f, self.cap[e]))
                        if d:
                            self.cap[e] -= d
                            self.cap[e ^ 1] += d
                            return d
                    it[u] += 1
                return 0

            while True:
                f = push(s, sum(self.cap[e] for e in self.adj[s]) or 1)
                if not f:
                    break
                total += f


def _completable(rem: Sequence[int], limits: Sequence[Sequence[int]], free: Sequence[int]) -> bool:
    nb, nr = len(rem), len(free)
    g = _Dinic(nb + nr + 2)
    s, t = nb + nr, nb + nr + 1
    for b in range(nb):
        if rem[b]:
            g.edge(s, b, rem[b])
            for r in range(nr):
                if limits[b][r]:
                    g.edge(b, nb + r, limits[b][r])
    for r in range(nr):
        if free[r]:
            g.edge(nb + r, t, free[r])
    return g.flow(s, t) >= sum(rem)


def _rooms_for_experts(
    sizes: Sequence[int], caps: Sequence[int], limits: Sequence[int], rng: random.Random
) -> tuple[list[list[int]], Literal["uniform", "guided"]]:
    """Room index of every expert (per bid, in input order) and the sampling method used."""
    nrooms = len(caps)
    per_room = [[min(lim, cap) for cap in caps] for lim in limits]
    tables = [_spread_table(k, per_room[b]) for b, k in enumerate(sizes)]
    for _ in range(_MAX_ROOM_TRIES):
        spreads = [_sample_spread(k, per_room[b], tables[b], rng) for b, k in enumerate(sizes)]
        if all(sum(sp[r] for sp in spreads) <= caps[r] for r in range(nrooms)):
            rooms: list[list[int]] = []
            for sp in spreads:
                slots = [r for r in range(nrooms) for _ in range(sp[r])]
                rng.shuffle(slots)
                rooms.append(slots)
            return rooms, "uniform"
    # Guided fallback: every step keeps the remaining problem solvable (exact max-flow check).
    rem = list(sizes)
    left = [list(row) for row in per_room]
    free = list(caps)
    out: list[list[int]] = [[-1] * k for k in sizes]
    order = [(b, e) for b, k in enumerate(sizes) for e in range(k)]
    rng.shuffle(order)
    for b, e in order:
        candidates = list(range(nrooms))
        rng.shuffle(candidates)
        for r in candidates:
            if not (left[b][r] and free[r]):
                continue
            rem[b] -= 1
            left[b][r] -= 1
            free[r] -= 1
            if _completable(rem, left, free):
                out[b][e] = r
                break
            rem[b] += 1
            left[b][r] += 1
            free[r] += 1
        else:  # pragma: no cover - the invariant guarantees a candidate
            raise AssertionError("internal error: no room keeps the seating solvable")
    return out, "guided"


# ------------------------------------------------------------------------------ public API


def _check_ids(rooms: Sequence[Room], bids: Sequence[Bid]) -> None:
    seen_rooms: set[str] = set()
    for room in rooms:
        if room.id in seen_rooms:
            raise InputError(f"duplicate room id {room.id!r}")
        seen_rooms.add(room.id)
        ids: set[str] = set()
        where: dict[tuple[int, int], str] = {}
        for seat in room.seats:
            if seat.id in ids:
                raise InputError(f"room {room.id}: duplicate seat id {seat.id!r}")
            ids.add(seat.id)
            pos = (seat.row, seat.col)
            if pos in where:
                raise InputError(
                    f"room {room.id}: seats {where[pos]!r} and {seat.id!r} are both at "
                    f"row {seat.row}, col {seat.col}"
                )
            where[pos] = seat.id
    seen_bids: set[str] = set()
    owner: dict[str, str] = {}
    for bid in bids:
        if bid.id in seen_bids:
            raise InputError(f"duplicate bid id {bid.id!r}")
        seen_bids.add(bid.id)
        for expert in bid.experts:
            if expert in owner:
                if owner[expert] == bid.id:
                    raise InputError(f"bid {bid.id}: expert {expert!r} is listed twice")
                raise InputError(f"expert {expert!r} is in two bids: {owner[expert]} and {bid.id}")
            owner[expert] = bid.id


def assign_seats(rooms: list[Room], bids: list[Bid], seed: int) -> Assignment:
    """Seat every expert of ``bids`` in ``rooms`` at random, reproducibly from ``seed``.

    See the module docstring for the full contract (non-adjacency, spreading bids over rooms,
    what is uniform).  ``seed`` must be a non-negative integer; it is returned in the result so
    that the caller (the hub) can record it in the audit log — this function writes no audit
    entry.  Raises :class:`InputError` for duplicate ids / positions, an expert in two bids or a
    negative seed, and :class:`InfeasibleError` when there are fewer non-adjacent seats than
    experts (the message gives every room's seat count and capacity).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    _check_ids(rooms, bids)
    caps = [room_capacity(room) for room in rooms]
    sizes = [len(b.experts) for b in bids]
    total = sum(sizes)
    if total > sum(caps):
        detail = "; ".join(
            f"room {room.id} has {len(room.seats)} seats but at most {cap} non-adjacent"
            for room, cap in zip(rooms, caps, strict=True)
        )
        raise InfeasibleError(
            f"{total} experts but only {sum(caps)} non-adjacent seats in all rooms"
            + (f" ({detail})" if detail else " (no rooms given)")
        )
    rng = random.Random(seed)  # noqa: S311 - reproducible draw from a recorded seed, not a secret
    limits = _bid_caps(sizes, caps)
    room_of, method = (
        _rooms_for_experts(sizes, caps, limits, rng) if total else ([[] for _ in bids], "uniform")
    )

    members: list[list[tuple[int, int]]] = [[] for _ in rooms]
    for b, experts_rooms in enumerate(room_of):
        for e, r in enumerate(experts_rooms):
            members[r].append((b, e))
    seat_of: dict[tuple[int, int], tuple[int, int]] = {}
    for r, room in enumerate(rooms):
        if not members[r]:
            continue
        chosen = _sample_sparse(room.seats, len(members[r]), rng)
        if chosen is None:
            chosen = _sample_independent(_room_grid(room), len(members[r]), rng)
        rng.shuffle(chosen)
        for member, seat_index in zip(members[r], chosen, strict=True):
            seat_of[member] = (r, seat_index)

    assignments: list[SeatAssignment] = []
    max_per_room: dict[str, int] = {}
    warnings: list[str] = []
    for b, bid in enumerate(bids):
        counts = [0] * len(rooms)
        for e, expert in enumerate(bid.experts):
            r, s = seat_of[(b, e)]
            counts[r] += 1
            assignments.append(
                SeatAssignment(expert=expert, bid=bid.id, room=rooms[r].id, seat=rooms[r].seats[s].id)
            )
        max_per_room[bid.id] = max(counts, default=0)
        bound = math.ceil(len(bid.experts) / len(rooms)) if rooms else 0
        if max_per_room[bid.id] > bound:
            warnings.append(
                f"bid {bid.id}: up to {max_per_room[bid.id]} of its {len(bid.experts)} experts share a room "
                f"(ceil({len(bid.experts)}/{len(rooms)} rooms) = {bound}); the rooms do not have enough "
                "non-adjacent seats to spread it further"
            )
    return Assignment(
        seed=seed, assignments=assignments, max_per_room=max_per_room, room_sampling=method, warnings=warnings
    )


# ------------------------------------------------------------------------------ input file


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(err: Any) -> str:
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{_loc(err['loc'])}: missing (required field)"
    got = repr(err["input"])
    if len(got) > 60:
        got = got[:57] + "..."
    return f"{_loc(err['loc'])}: {msg} (got {got})"


def load_input(path: str | Path) -> tuple[list[Room], list[Bid]]:
    """Read and validate a seating input file (YAML or JSON).

    The format is chosen by the extension (``.json``, ``.yaml``, ``.yml``), otherwise by the
    content (JSON if it starts with ``{``, YAML else).  Raises :class:`InputError` naming the file
    and, for validation problems, every offending field (``rooms[0].seats[2].row: ...``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{"))
    data: Any
    if as_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the top level must be a mapping with 'rooms' and 'bids'")
    try:
        parsed = SeatingInput.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = [_describe(e) for e in errors[:10]]
        if len(errors) > 10:
            lines.append(f"... and {len(errors) - 10} more")
        raise InputError(f"{path}: " + "; ".join(lines)) from None
    return parsed.rooms, parsed.bids


# ------------------------------------------------------------------------------------ CLI


def _display_width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _display_width(text))


def format_table(result: Assignment, rooms: Sequence[Room]) -> str:
    """Human-readable seating chart (room, seat, expert, bid), aligned for CJK text."""
    order = {room.id: (i, {seat.id: j for j, seat in enumerate(room.seats)}) for i, room in enumerate(rooms)}

    def key(a: SeatAssignment) -> tuple[int, int]:
        room_index, seats = order.get(a.room, (len(order), {}))
        return room_index, seats.get(a.seat, 0)

    header = ("房间 Room", "座位 Seat", "专家 Expert", "项目 Bid")
    rows = [(a.room, a.seat, a.expert, a.bid) for a in sorted(result.assignments, key=key)]
    widths = [max(_display_width(x) for x in col) for col in zip(header, *rows, strict=False)]
    lines = [f"座位随机分配 Seat assignment — 随机种子 seed: {result.seed}", ""]
    lines.append("  ".join(_pad(h, w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(x, w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("")
    lines.append(f"共 {len(rows)} 名专家 experts, {len(rooms)} 个房间 rooms")
    return "\n".join(lines)
