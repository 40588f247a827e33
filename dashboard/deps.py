"""FastAPI dependencies shared by the dashboard's routes.

* :data:`State` — the app's :class:`dashboard.state.DashState` (``st: State`` in a route's
  parameters instead of calling ``get_state(request)`` in its body);
* the role gates (``allow``, ``ws_allow``, ``page``) live in :mod:`dashboard.policy`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dashboard.state import DashState, get_state

State = Annotated[DashState, Depends(get_state)]

__all__ = ["State", "get_state"]
