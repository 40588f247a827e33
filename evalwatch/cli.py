"""The ``evalwatch`` command: dispatches ``evalwatch COMMAND ...`` to the module that owns it.

Each command module exposes ``cli(argv: list[str]) -> int``; imports are lazy so that the site
agent does not pull in the hub's dependencies.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("evalwatch.run", "start S3 server, hub and simulated agents (the demo)"),
    "hub": ("evalwatch.hub", "run the hub: recorder, analysis, storage, dashboard"),
    "agent": ("evalwatch.edge", "run a site agent publishing a room's cameras (and analysing them)"),
    "analyze": ("evalwatch.analyze", "analyse a video file offline with a room's seats"),
    "verify": ("evalwatch.verify", "verify a camera's hash chain or an evidence zip"),
    "config": ("evalwatch.config_check", "check config files"),
    "seats": ("evalwatch.seats", "random seat assignment"),
    "session": ("evalwatch.session", "create, start and close evaluation sessions"),
    "report": ("evalwatch.report", "supervision report of a session (HTML/PDF)"),
    "export": ("evalwatch.export", "export a session's evidence as a verifiable zip"),
    "db": ("evalwatch.db", "database migrations"),
    "experts": ("evalwatch.experts", "expert register import and credit record exports"),
    "site": ("evalwatch.site", "agent enrolment codes and credentials of a site"),
    "storage": ("evalwatch.storage", "object storage: the retention purge, a local SeaweedFS cluster"),
    "tls": ("evalwatch.tls", "self-signed HTTPS certificate for the hub, certificate fingerprints"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_) in COMMANDS.items():
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            out[name] = (module, help_)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = _available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: evalwatch COMMAND [ARGS...]\n\ncommands:")
        for name, (_m, help_) in commands.items():
            print(f"  {name:<9} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"evalwatch: unknown command {name!r} (try: {', '.join(commands)})", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    try:
        return int(module.cli(rest) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
