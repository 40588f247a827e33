"""The site agent as a Windows service (pywin32).  Imported only on Windows (``capture.service``).

The service is hosted by ``python.exe`` itself (pywin32's "native" hosting, not
``pythonservice.exe``): the service control manager starts
``python.exe -m evalwatch agent service-run OPTIONS``, which hands this process to the service
dispatcher (:func:`run`).  ``SvcDoRun`` runs the agent; ``SvcStop`` asks it to stop through
``capture.hostos.stop_all`` (the agent's asyncio loop, from the control thread).  An agent that
ends with an error leaves the process without reporting "stopped", which the service manager
treats as a failure and answers with the restart actions set at install (5 s, 5 s, 60 s).
The service runs as ``NT AUTHORITY\\LocalService`` (no administrator rights), which is granted
modify rights on the state directory (``%PROGRAMDATA%\\evalwatch``) at install.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import servicemanager
import win32service
import win32serviceutil

from capture.hostos import default_state_dir, stop_all

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A failed step, named (``capture.service`` prints it and exits 2)."""


ACCOUNT = r"NT AUTHORITY\LocalService"
#: The LocalService account's SID (account names are localised; the SID is not).
ACCOUNT_SID = "*S-1-5-19"


class AgentService(win32serviceutil.ServiceFramework):
    _svc_name_ = "evalwatch-agent"
    _svc_display_name_ = "evalwatch site agent"
    _svc_description_ = "Streams the room's cameras to the evalwatch hub and keeps their archive segments."
    argv: ClassVar[list[str]] = []
    agent_main: ClassVar[Callable[[list[str]], int] | None] = None

    def SvcStop(self) -> None:
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        stop_all()

    def SvcDoRun(self) -> None:
        main = type(self).agent_main
        rc = 2 if main is None else main(list(type(self).argv))
        if rc != 0:
            logging.shutdown()
            os._exit(rc)  # no "stopped" report: the service manager's failure actions restart it


def run(argv: list[str], agent_main: Callable[[list[str]], int]) -> int:
    AgentService.argv = argv
    AgentService.agent_main = agent_main
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(AgentService)
    servicemanager.StartServiceCtrlDispatcher()
    return 0


def _sc(*args: str) -> None:
    r = subprocess.run(["sc.exe", *args], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ServiceError(f"sc.exe {' '.join(args)} failed: {(r.stdout or r.stderr).strip()}")


def install(name: str, site: str, executable: str, agent_args: list[str], *, start: bool = True) -> None:
    state = Path(str(default_state_dir()))
    for sub in ("spool", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["icacls", str(state), "/grant", f"{ACCOUNT_SID}:(OI)(CI)M", "/T", "/Q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        raise ServiceError(f"icacls {state} failed: {(r.stdout or r.stderr).strip()}")
    args = subprocess.list2cmdline(["-m", "evalwatch", "agent", "service-run", *agent_args])
    kwargs: dict[str, Any] = {
        "startType": win32service.SERVICE_AUTO_START,
        "exeName": executable,
        "exeArgs": args,
        "userName": ACCOUNT,
        "password": "",
        "description": AgentService._svc_description_,
    }
    try:
        win32serviceutil.InstallService(None, name, f"evalwatch site agent ({site})", **kwargs)
    except Exception as e:  # pywintypes.error: access denied, exists, ...
        raise ServiceError(f"cannot install service {name}: {e}") from None
    _sc("failure", name, "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000")
    if start:
        try:
            win32serviceutil.StartService(name)
        except Exception as e:
            raise ServiceError(f"installed, but cannot start {name}: {e}") from None


def remove(name: str) -> None:
    try:
        win32serviceutil.StopService(name)
    except Exception as e:  # not running is fine
        log.debug("stop %s: %s", name, e)
    try:
        win32serviceutil.RemoveService(name)
    except Exception as e:
        raise ServiceError(f"cannot remove service {name}: {e}") from None
