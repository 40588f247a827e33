"""Tests for ``sessions.seating`` (``evalwatch seats assign``).

The properties are checked against independent brute-force references: maximum independent sets
by plain recursion over the seats, and the room-level optimum by a memoised search over per-bid
count vectors (the implementation uses a profile DP and a min-cut formula instead).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from functools import cache
from itertools import combinations, product
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessions.seating as seating
from evalwatch.seats import cli
from sessions.seating import (
    Assignment,
    Bid,
    InfeasibleError,
    InputError,
    Room,
    Seat,
    assign_seats,
    load_input,
    room_capacity,
)

# ------------------------------------------------------------------------- references


def adjacent(a: Seat, b: Seat) -> bool:
    return abs(a.row - b.row) <= 1 and abs(a.col - b.col) <= 1


def ref_capacity(seats: Sequence[Seat]) -> int:
    """Maximum independent set by include/exclude recursion (fine for ~20 seats)."""

    def go(rest: tuple[Seat, ...]) -> int:
        if not rest:
            return 0
        first, others = rest[0], rest[1:]
        take = 1 + go(tuple(s for s in others if not adjacent(first, s)))
        return max(take, go(others))

    return go(tuple(seats))


def ref_feasible(sizes: Sequence[int], caps: Sequence[int], limits: Sequence[int]) -> bool:
    """Can bid ``b`` put ``sizes[b]`` experts into rooms with at most ``limits[b]`` per room?"""
    nrooms = len(caps)

    @cache
    def go(b: int, free: tuple[int, ...]) -> bool:
        if b == len(sizes):
            return True
        for counts in product(*(range(min(limits[b], f) + 1) for f in free)):
            if sum(counts) == sizes[b] and go(b + 1, tuple(f - c for f, c in zip(free, counts, strict=True))):
                return True
        return False

    if sizes and nrooms == 0:
        return sum(sizes) == 0
    return go(0, tuple(caps))


def check_valid(rooms: list[Room], bids: list[Bid], result: Assignment) -> None:
    """Every invariant of the contract, with the room-level optimum checked by brute force."""
    room_by_id = {r.id: r for r in rooms}
    bid_of = {e: b.id for b in bids for e in b.experts}
    assert sorted(a.expert for a in result.assignments) == sorted(bid_of)
    assert [a.expert for a in result.assignments] == [e for b in bids for e in b.experts]
    used: dict[str, list[Seat]] = {r.id: [] for r in rooms}
    for a in result.assignments:
        assert a.bid == bid_of[a.expert]
        seat = next(s for s in room_by_id[a.room].seats if s.id == a.seat)
        used[a.room].append(seat)
    for room_id, seats in used.items():
        assert len({s.id for s in seats}) == len(seats), f"seat used twice in {room_id}"
        for x, y in combinations(seats, 2):
            assert not adjacent(x, y), f"{room_id}: {x} next to {y}"

    # Room level: per-bid maxima against the brute-force optimum.
    nrooms = len(rooms)
    caps = [ref_capacity(r.seats) for r in rooms]
    sizes = [len(b.experts) for b in bids]
    maxima = []
    for b in bids:
        per_room = Counter(a.room for a in result.assignments if a.bid == b.id)
        maxima.append(max(per_room.values(), default=0))
        assert result.max_per_room[b.id] == maxima[-1]
    lower = [math.ceil(s / nrooms) for s in sizes]
    if ref_feasible(sizes, caps, lower):
        assert maxima == lower  # every bid at its own optimum ...
        for b, m in zip(bids, maxima, strict=True):
            if len(b.experts) <= nrooms:  # ... i.e. distinct rooms whenever there are enough
                assert m <= 1
        assert result.warnings == []
    else:
        best = next(m for m in range(max(sizes) + 1) if ref_feasible(sizes, caps, [min(m, s) for s in sizes]))
        assert max(maxima) == best
        for i in range(len(bids)):  # Pareto-minimal: no bid can be lowered on its own
            if maxima[i] > lower[i]:
                trial = list(maxima)
                trial[i] -= 1
                assert not ref_feasible(sizes, caps, trial)
        assert result.warnings


# ------------------------------------------------------------------------- strategies


@st.composite
def coordinates(draw: st.DrawFn, n: int) -> list[int]:
    """``n`` increasing coordinates with gaps of 1 (adjacent), 2 or larger (aisles)."""
    start = draw(st.integers(-3, 3))
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 5]), min_size=n, max_size=n))
    out, pos = [], start
    for g in gaps:
        out.append(pos)
        pos += g
    return out


@st.composite
def rooms_strategy(draw: st.DrawFn, max_rooms: int = 4) -> list[Room]:
    rooms = []
    for k in range(draw(st.integers(1, max_rooms))):
        nr, nc = draw(st.integers(1, 4)), draw(st.integers(1, 5))
        rows, cols = draw(coordinates(nr)), draw(coordinates(nc))
        cells = [(r, c) for r in rows for c in cols]
        keep = draw(
            st.lists(st.sampled_from([True, True, True, False]), min_size=len(cells), max_size=len(cells))
        )
        seats = [
            Seat(id=f"S{i}", row=r, col=c)
            for i, ((r, c), k_) in enumerate(zip(cells, keep, strict=True))
            if k_
        ]
        seats = draw(st.permutations(seats))
        rooms.append(Room(id=f"R{k}" if k else "评标室一", seats=list(seats)))
    return rooms


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[Room], list[Bid]]:
    rooms = draw(rooms_strategy())
    capacity = sum(ref_capacity(r.seats) for r in rooms)
    sizes = draw(st.lists(st.integers(0, 7), min_size=1, max_size=5))
    bids = []
    for b, size in enumerate(sizes):
        size = min(size, capacity)  # keep it feasible
        capacity -= size
        bids.append(
            Bid(id=f"B{b}", experts=[f"专家{b}-{e}" if e % 3 == 0 else f"E{b}-{e}" for e in range(size)])
        )
    return rooms, bids


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------- properties


@SETTINGS
@given(instances(), st.integers(0, 2**32))
def test_assignment_is_valid_and_optimal(instance: tuple[list[Room], list[Bid]], seed: int) -> None:
    rooms, bids = instance
    result = assign_seats(rooms, bids, seed)
    assert result.seed == seed
    check_valid(rooms, bids, result)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.integers(0, 2**32))
def test_guided_fallback_is_valid_and_optimal(instance: tuple[list[Room], list[Bid]], seed: int) -> None:
    """With no rejection draws allowed, the flow-guided room construction and the seat DP must
    still be correct."""
    rooms, bids = instance
    with pytest.MonkeyPatch.context() as m:
        m.setattr(seating, "_MAX_ROOM_TRIES", 0)
        m.setattr(seating, "_MAX_SEAT_TRIES", 0)
        result = assign_seats(rooms, bids, seed)
    if any(b.experts for b in bids):
        assert result.room_sampling == "guided"
    check_valid(rooms, bids, result)


@settings(max_examples=150, deadline=None)
@given(rooms_strategy(max_rooms=1))
def test_capacity_matches_brute_force(rooms: list[Room]) -> None:
    assert room_capacity(rooms[0]) == ref_capacity(rooms[0].seats)


@pytest.mark.parametrize(
    ("nrows", "ncols"), [(1, 1), (1, 7), (2, 2), (3, 3), (4, 6), (5, 8), (8, 8), (7, 12)]
)
def test_capacity_of_full_grid(nrows: int, ncols: int) -> None:
    room = Room(id="R", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r in range(nrows) for c in range(ncols)])
    assert room_capacity(room) == math.ceil(nrows / 2) * math.ceil(ncols / 2)


def test_capacity_irregular_layouts() -> None:
    def room(*pos: tuple[int, int]) -> Room:
        return Room(id="R", seats=[Seat(id=str(i), row=r, col=c) for i, (r, c) in enumerate(pos)])

    assert room_capacity(room()) == 0
    assert room_capacity(room((0, 0), (0, 1000), (1000, 0))) == 3  # far apart: huge gaps compress
    assert room_capacity(room((0, 0), (1, 1), (2, 2), (3, 3))) == 2  # a diagonal is adjacent
    assert room_capacity(room((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))) == 4
    assert room_capacity(room(*((r, c) for r in range(3) for c in range(9) if c != 4))) == 2 * 4  # aisle


# ------------------------------------------------------------------------- reproducibility


def sample_instance() -> tuple[list[Room], list[Bid]]:
    rooms = [
        Room(id=f"R{k}", seats=[Seat(id=f"{r}{c}", row=r, col=c) for r in range(4) for c in range(5)])
        for k in range(3)
    ]
    bids = [Bid(id=f"B{b}", experts=[f"E{b}{e}" for e in range(3)]) for b in range(4)]
    return rooms, bids


def test_same_seed_same_result() -> None:
    rooms, bids = sample_instance()
    for seed in (0, 1, 12345, 2**62 + 7):
        first = assign_seats(rooms, bids, seed)
        again = assign_seats([r.model_copy() for r in rooms], [b.model_copy() for b in bids], seed)
        assert first.model_dump() == again.model_dump()


def test_different_seeds_usually_differ() -> None:
    rooms, bids = sample_instance()
    results = {
        json.dumps(assign_seats(rooms, bids, seed).to_json_dict()["assignments"]) for seed in range(30)
    }
    assert len(results) >= 28


def test_seed_is_validated() -> None:
    rooms, bids = sample_instance()
    with pytest.raises(InputError, match="seed"):
        assign_seats(rooms, bids, -1)


# ------------------------------------------------------------------------- statistics


def test_every_usable_seat_gets_used() -> None:
    """Across 300 seeds, exactly the seats that belong to some valid seating get used.

    4 experts in a full 3x4 room (capacity 4): every seat of rows 0 and 2 can be used, but no
    seat of the middle row can (it blocks three columns of both other rows).
    """
    room = Room(id="R", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r in range(3) for c in range(4)])
    bids = [Bid(id=f"B{i}", experts=[f"E{i}"]) for i in range(4)]
    usable = {
        s.id
        for combo in combinations(room.seats, 4)
        if not any(adjacent(a, b) for a, b in combinations(combo, 2))
        for s in combo
    }
    assert usable == {f"{r}-{c}" for r in (0, 2) for c in range(4)}
    seen: Counter[str] = Counter()
    for seed in range(300):
        for a in assign_seats([room], bids, seed).assignments:
            seen[a.seat] += 1
    assert set(seen) == usable
    assert min(seen.values()) >= 50  # expected 150 each


def test_every_usable_seat_gets_used_with_hole() -> None:
    """Same on an irregular room (3x4 with a missing seat), 3 experts: all usable seats appear."""
    positions = [(r, c) for r in range(3) for c in range(4) if (r, c) != (1, 2)]
    room = Room(id="R", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r, c in positions])
    bids = [Bid(id="B", experts=["x"]), Bid(id="C", experts=["y", "z"])]
    usable = {
        s.id
        for combo in combinations(room.seats, 3)
        if not any(adjacent(a, b) for a, b in combinations(combo, 2))
        for s in combo
    }
    seen = Counter(a.seat for seed in range(300) for a in assign_seats([room], bids, seed).assignments)
    assert set(seen) == usable


@pytest.mark.parametrize("seat_tries", [0, 200])
def test_seat_sets_are_uniform(seat_tries: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The set of occupied seats is uniform over all non-adjacent sets (chi-square, loose bound),
    both when drawn by the counting DP (no rejection tries) and by rejection."""
    monkeypatch.setattr(seating, "_MAX_SEAT_TRIES", seat_tries)
    room = Room(id="R", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r in range(3) for c in range(3)])
    bids = [Bid(id="B", experts=["E1"]), Bid(id="C", experts=["E2"])]
    valid = [frozenset(s.id for s in combo) for combo in combinations(room.seats, 2) if not adjacent(*combo)]
    draws = 1600
    counts = Counter(
        frozenset(a.seat for a in assign_seats([room], bids, seed).assignments) for seed in range(draws)
    )
    assert set(counts) == set(valid)
    expected = draws / len(valid)
    chi2 = sum((counts[v] - expected) ** 2 / expected for v in valid)
    assert chi2 < 60  # 15 degrees of freedom: p(chi2 > 60) ~ 1e-7


def test_room_choice_is_uniform() -> None:
    """A bid of 2 over 3 roomy rooms: the 6 ordered room pairs are about equally likely."""
    rooms = [
        Room(id=f"R{k}", seats=[Seat(id="a", row=0, col=0), Seat(id="b", row=0, col=2)]) for k in range(3)
    ]
    bids = [Bid(id="B", experts=["x", "y"])]
    counts = Counter(
        tuple(a.room for a in assign_seats(rooms, bids, seed).assignments) for seed in range(600)
    )
    assert len(counts) == 6
    assert all(60 <= c <= 140 for c in counts.values()), counts


def test_large_room_with_few_experts() -> None:
    room = Room(id="Hall", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r in range(16) for c in range(30)])
    assert room_capacity(room) == 8 * 15
    bids = [Bid(id=f"B{i}", experts=[f"E{i}"]) for i in range(12)]
    result = assign_seats([room], bids, 4)
    seat = {s.id: s for s in room.seats}
    taken = [seat[a.seat] for a in result.assignments]
    assert len({s.id for s in taken}) == 12
    assert not any(adjacent(x, y) for x, y in combinations(taken, 2))


def test_too_wide_layout_is_refused() -> None:
    room = Room(id="Hall", seats=[Seat(id=f"{r}-{c}", row=r, col=c) for r in range(21) for c in range(25)])
    with pytest.raises(InputError, match="room Hall: seat layout too large"):
        assign_seats([room], [Bid(id="B", experts=["x"])], 1)


# ------------------------------------------------------------------------- bid spreading


def test_large_bid_spreads_evenly() -> None:
    rooms, _ = sample_instance()
    bids = [Bid(id="big", experts=[f"E{i}" for i in range(7)]), Bid(id="small", experts=["s1", "s2", "s3"])]
    result = assign_seats(rooms, bids, 5)
    check_valid(rooms, bids, result)
    assert result.max_per_room == {"big": 3, "small": 1}


def test_capacity_constrained_optimum_warns() -> None:
    """Two seats in R1, one in R2: a bid of 3 must put 2 in R1, and says so."""
    rooms = [
        Room(id="R1", seats=[Seat(id="a", row=0, col=0), Seat(id="b", row=0, col=2)]),
        Room(id="R2", seats=[Seat(id="c", row=0, col=0)]),
        Room(id="R3", seats=[]),
    ]
    bids = [Bid(id="B", experts=["x", "y", "z"])]
    result = assign_seats(rooms, bids, 1)
    check_valid(rooms, bids, result)
    assert result.max_per_room == {"B": 2}
    assert "bid B" in result.warnings[0]


# ------------------------------------------------------------------------- errors (library)


def test_infeasible_total_capacity() -> None:
    rooms, _ = sample_instance()
    bids = [Bid(id="B", experts=[f"E{i}" for i in range(19)])]
    with pytest.raises(InfeasibleError, match="19 experts but only 18 non-adjacent seats in all rooms"):
        assign_seats(rooms, bids, 0)
    with pytest.raises(InfeasibleError, match="no rooms"):
        assign_seats([], bids, 0)


@pytest.mark.parametrize(
    ("rooms", "bids", "message"),
    [
        ([Room(id="R", seats=[]), Room(id="R", seats=[])], [], "duplicate room id 'R'"),
        (
            [Room(id="R", seats=[Seat(id="a", row=0, col=0), Seat(id="a", row=0, col=5)])],
            [],
            "room R: duplicate seat id 'a'",
        ),
        (
            [Room(id="R", seats=[Seat(id="a", row=0, col=0), Seat(id="b", row=0, col=0)])],
            [],
            "room R: seats 'a' and 'b' are both at row 0, col 0",
        ),
        ([], [Bid(id="B", experts=[]), Bid(id="B", experts=[])], "duplicate bid id 'B'"),
        ([], [Bid(id="B", experts=["x", "x"])], "bid B: expert 'x' is listed twice"),
        ([], [Bid(id="B", experts=["x"]), Bid(id="C", experts=["x"])], "expert 'x' is in two bids: B and C"),
    ],
)
def test_bad_ids(rooms: list[Room], bids: list[Bid], message: str) -> None:
    with pytest.raises(InputError) as info:
        assign_seats(rooms, bids, 0)
    assert message in str(info.value)


def test_empty_input() -> None:
    result = assign_seats([], [], 3)
    assert result.to_json_dict() == {"seed": 3, "assignments": []}
    rooms, _ = sample_instance()
    assert assign_seats(rooms, [Bid(id="B", experts=[])], 3).assignments == []


# ------------------------------------------------------------------------- CLI

YAML_INPUT = """\
rooms:
  - id: 第一评标室
    seats:
      - {id: A1, row: 1, col: 1}
      - {id: A2, row: 1, col: 2}
      - {id: A3, row: 1, col: 3}
      - {id: C1, row: 3, col: 1}
      - {id: C3, row: 3, col: 3}
  - id: R2
    seats: [{id: A1, row: 0, col: 0}, {id: A3, row: 0, col: 2}, {id: C1, row: 2, col: 0}]
bids:
  - id: 项目甲
    experts: [张三, 李四]
  - id: 42
    experts: [1001, E2, E3]
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_yaml_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "seats.yaml"
    path.write_text(YAML_INPUT, encoding="utf-8")
    code, out, err = run(["assign", str(path), "--seed", "99", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    rooms, bids = load_input(path)
    assert data == assign_seats(rooms, bids, 99).to_json_dict()
    assert data["seed"] == 99
    assert {a["expert"] for a in data["assignments"]} == {"张三", "李四", "1001", "E2", "E3"}
    assert {a["bid"] for a in data["assignments"]} == {"项目甲", "42"}
    check_valid(rooms, bids, assign_seats(rooms, bids, 99))

    code, table, _ = run(["assign", str(path), "--seed", "99"], capsys)
    assert code == 0
    assert "99" in table.splitlines()[0]
    for a in data["assignments"]:
        assert any(
            a["expert"] in line and a["room"] in line and a["seat"] in line for line in table.splitlines()
        )


def test_cli_json_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rooms, bids = sample_instance()
    payload = {"rooms": [r.model_dump() for r in rooms], "bids": [b.model_dump() for b in bids]}
    for name in ("seats.json", "seats-no-extension"):
        path = tmp_path / name
        path.write_text(json.dumps(payload), encoding="utf-8")
        code, out, err = run(["assign", str(path), "--seed", "7", "--json"], capsys)
        assert code == 0, err
        assert json.loads(out) == assign_seats(rooms, bids, 7).to_json_dict()


def test_cli_yaml_without_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "seats"
    path.write_text(YAML_INPUT, encoding="utf-8")
    code, out, _ = run(["assign", str(path), "--seed", "1", "--json"], capsys)
    assert code == 0
    assert len(json.loads(out)["assignments"]) == 5


def test_cli_draws_and_prints_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "seats.yaml"
    path.write_text(YAML_INPUT, encoding="utf-8")
    code, out, err = run(["assign", str(path), "--json"], capsys)
    assert code == 0
    seed = json.loads(out)["seed"]
    assert f"seed: {seed}" in err
    code, again, _ = run(["assign", str(path), "--json", "--seed", str(seed)], capsys)
    assert code == 0 and again == out


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "full.yaml",
            "rooms: [{id: R1, seats: [{id: a, row: 0, col: 0}, {id: b, row: 0, col: 1},\n"
            "                         {id: c, row: 0, col: 2}]}]\n"
            "bids: [{id: B, experts: [x, y, z]}]\n",
            [
                "3 experts but only 2 non-adjacent seats in all rooms",
                "room R1 has 3 seats but at most 2 non-adjacent",
            ],
        ),
        ("bad.yaml", "rooms: [\n  - id: R1\n bids: {\n", ["bad.yaml", "invalid YAML", "line"]),
        ("bad.json", '{"rooms": [', ["bad.json", "invalid JSON", "line 1"]),
        ("norooms.yaml", "bids: []\n", ["norooms.yaml", "rooms: missing"]),
        ("list.yaml", "- 1\n- 2\n", ["top level must be a mapping"]),
        (
            "row.yaml",
            "rooms: [{id: R1, seats: [{id: a, row: x, col: 0}]}]\nbids: []\n",
            ["rooms[0].seats[0].row", "integer", "'x'"],
        ),
        (
            "float.yaml",
            "rooms: [{id: R1, seats: [{id: a, row: 0, col: 1.5}]}]\nbids: []\n",
            ["rooms[0].seats[0].col"],
        ),
        (
            "norow.json",
            '{"rooms": [{"id": "R1", "seats": [{"id": "a", "col": 0}]}], "bids": []}',
            ["rooms[0].seats[0].row: missing"],
        ),
        ("noexperts.yaml", "rooms: []\nbids: [{id: B}]\n", ["bids[0].experts: missing"]),
        ("boolid.yaml", "rooms: []\nbids: [{id: yes, experts: []}]\n", ["bids[0].id", "boolean"]),
        (
            "twobids.yaml",
            "rooms: [{id: R1, seats: [{id: a, row: 0, col: 0}, {id: b, row: 0, col: 9}]}]\n"
            "bids: [{id: B1, experts: [x]}, {id: B2, experts: [x]}]\n",
            ["expert 'x' is in two bids: B1 and B2"],
        ),
        (
            "dupseat.yaml",
            "rooms: [{id: R1, seats: [{id: a, row: 0, col: 0}, {id: a, row: 0, col: 9}]}]\nbids: []\n",
            ["room R1: duplicate seat id 'a'"],
        ),
    ],
)
def test_cli_bad_input_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, expected: list[str]
) -> None:
    code, out, err = run(["assign", write(tmp_path, name, text), "--seed", "1", "--json"], capsys)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err


def test_cli_missing_file_and_bad_args(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["assign", str(tmp_path / "nope.yaml"), "--seed", "1"], capsys)
    assert code == 2 and "nope.yaml" in err and "cannot read" in err
    ok = write(tmp_path, "ok.yaml", YAML_INPUT)
    for argv in (
        ["assign", ok, "--seed", "abc"],
        ["assign", ok, "--seed", "-3"],
        ["assign"],
        [],
        ["frobnicate"],
    ):
        code, _, err = run(argv, capsys)
        assert code == 2, argv
        assert "usage" in err
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "assign" in out


def test_evalwatch_dispatcher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evalwatch.cli import main

    path = write(tmp_path, "seats.yaml", YAML_INPUT)
    assert main(["seats", "assign", path, "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 3
