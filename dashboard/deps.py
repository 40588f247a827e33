"""FastAPI dependencies shared by the dashboard's routes.

* :data:`State` — the app's :class:`dashboard.state.DashState` (``st: State`` in a route's
  parameters instead of calling ``get_state(request)`` in its body);
* :data:`Audit` — the audit log of this request (``auditor: Audit``, then
  ``await auditor("action", target=..., details=...)``): the actor and role are the principal
  the route's gate let in, the ip is the client's; ``await auditor.observer("action", target)``
  logs only observers' views (third parties: every view they make is logged);
* the role gates (``allow``, ``ws_allow``, ``page``) live in :mod:`dashboard.policy`.

Rows written inside a route's own transaction (``dashboard.audit.add``) stay there, so that the
change and its audit row commit together.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from dashboard import audit
from dashboard.policy import Principal, client_ip
from dashboard.state import DashState, get_state

State = Annotated[DashState, Depends(get_state)]


class Auditor:
    """Appends this request's audit rows, each in its own transaction."""

    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def principal(self) -> Principal:
        """The user the route's ``allow(...)`` gate let in."""
        me = getattr(self._request.state, "principal", None)
        if not isinstance(me, Principal):
            raise RuntimeError("Audit needs a route gated by allow(...)")
        return me

    async def __call__(
        self, action: str, *, target: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        me = self.principal
        await audit.record(
            get_state(self._request).db,
            me.username,
            action,
            role=me.role,
            target=target,
            ip=client_ip(self._request),
            details=details,
        )

    async def observer(self, action: str, target: str | None = None) -> None:
        """Log the view only when the caller is an observer."""
        if self.principal.role == "observer":
            await self(action, target=target)


Audit = Annotated[Auditor, Depends(Auditor)]

__all__ = ["Audit", "Auditor", "State", "get_state"]
