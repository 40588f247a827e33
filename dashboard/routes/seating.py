"""Random seat assignment for the session form: ``POST /api/seats/assign`` (admin, supervisor).

The rooms come from the config (their seats need ``row``/``col``: without a layout nobody can
keep experts apart), the bids and experts from the form.  :func:`sessions.seating.assign_seats`
does the drawing; the seed (drawn here unless given) and the full result are written to the
audit log as ``seats_assign`` so that the draw can be reproduced and compared with the seats the
session was created with.  An impossible seating answers 422 ``err.seating_infeasible`` with
the seating module's explanation in ``detail``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.policy import Principal, allow
from sessions.seating import Assignment

router = APIRouter(tags=["sessions"])

MANAGERS = ("admin", "supervisor")
#: Seeds stay below 2**53 so that a browser (JavaScript numbers) can carry them exactly.
SEED_BOUND = 2**53

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/\s][^/]*$")]
Expert = Annotated[str, Field(min_length=1, max_length=200)]


class RoomRefIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: Name
    room: Name


class BidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Name
    experts: list[Expert] = Field(min_length=1, max_length=200)


class AssignIn(BaseModel):
    """Rooms of the session (from the config), bids with their experts, optional seed."""

    model_config = ConfigDict(extra="forbid")
    rooms: list[RoomRefIn] = Field(min_length=1, max_length=200)
    bids: list[BidIn] = Field(min_length=1, max_length=100)
    seed: Annotated[int, Field(ge=0, lt=SEED_BOUND)] | None = None


def _infeasible(msg: str) -> ApiError:
    return ApiError(422, "err.seating_infeasible", msg)


def seating_rooms(cfg: Any, rooms: list[RoomRefIn]) -> list[Any]:
    """``sessions.seating.Room`` objects (id ``site/room``) for the config's rooms."""
    from sessions.seating import Room, Seat

    out: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rooms):
        if (r.site, r.room) in seen:
            raise _infeasible(f"rooms[{i}]: room {r.site}/{r.room} is listed twice")
        seen.add((r.site, r.room))
        try:
            room = cfg.room(r.site, r.room)
        except KeyError:
            raise _infeasible(f"rooms[{i}]: no room {r.site}/{r.room} in the config") from None
        if not room.seats:
            raise _infeasible(f"room {r.site}/{r.room} has no seats in the config")
        unplaced = [s.id for s in room.seats if s.row is None or s.col is None]
        if unplaced:
            raise _infeasible(
                f"room {r.site}/{r.room}: seats {', '.join(unplaced)} have no row/col in the config; "
                "the seat layout is needed to keep experts apart"
            )
        out.append(
            Room(
                id=f"{r.site}/{r.room}",
                seats=[Seat(id=s.id, row=int(s.row), col=int(s.col)) for s in room.seats],
            )
        )
    return out


@router.post("/api/seats/assign", response_model=Assignment)
async def assign(
    auditor: Audit,
    st: State,
    body: AssignIn, me: Annotated[Principal, Depends(allow(*MANAGERS))]
) -> dict[str, Any]:
    """Draw a random seating: ``{seed, assignments: [{expert, bid, room: "site/room", seat}],
    max_per_room, room_sampling, warnings}``.  Audit ``seats_assign`` (seed and result)."""
    from sessions.seating import Bid, InfeasibleError, assign_seats

    rooms = seating_rooms(st.cfg, body.rooms)
    bids = [Bid(id=b.id, experts=list(b.experts)) for b in body.bids]
    seed = body.seed if body.seed is not None else secrets.randbelow(SEED_BOUND)
    try:
        result = await asyncio.to_thread(assign_seats, rooms, bids, seed)
    except InfeasibleError as e:
        await auditor(
            "seats_assign_failed",
            details={"seed": seed, "rooms": [r.id for r in rooms], "reason": str(e)[:500]},
        )
        raise _infeasible(str(e)) from None
    out = {
        "seed": result.seed,
        "assignments": [a.model_dump() for a in result.assignments],
        "max_per_room": result.max_per_room,
        "room_sampling": result.room_sampling,
        "warnings": result.warnings,
    }
    await auditor(
        "seats_assign",
        target=",".join(r.id for r in rooms)[:255],
        details={"seed": result.seed, "bids": {b.id: len(b.experts) for b in bids}, **out},
    )
    return out
