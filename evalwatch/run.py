"""``evalwatch run`` — the whole system on one machine: S3 server, hub, one agent per site.

This is what ``make run`` starts.  The S3 server runs in this process's care (not the hub's) so
that a hub restart — or a fault test killing it — leaves object storage up.  Ctrl-C (or SIGTERM)
stops agents first, then the hub, then the S3 server.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from capture.tls import hub_ssl
from config import ConfigError, EvalwatchConfig, load_config
from evalwatch.logs import setup_logging
from evalwatch.procs import Child, python_cmd, wait_http

log = logging.getLogger("evalwatch.run")


def _hub_pin(cfg: EvalwatchConfig) -> str | None:
    """SHA-256 of ``hub.tls_cert`` when the hub serves HTTPS itself, else None."""
    if not cfg.hub.tls_cert:
        return None
    from evalwatch.tls import cert_sha256

    try:
        return cert_sha256(cfg.hub.tls_cert)
    except ValueError as e:
        raise RuntimeError(f"hub.tls_cert: {e}") from None


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evalwatch run", description=__doc__)
    parser.add_argument("--config", default="config/default.yaml", help="config file (YAML)")
    parser.add_argument("--no-agents", action="store_true", help="start S3 and the hub only")
    parser.add_argument(
        "--exit-after", type=float, default=None, metavar="SECONDS",
        help="stop everything after this many seconds (smoke tests)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"evalwatch run: configuration problems:\n{e}", file=sys.stderr)
        return 2

    logs_dir = Path(cfg.storage.data_dir) / "logs"
    children: list[Child] = []
    s3 = None
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        hub_env: dict[str, str] = {}
        if cfg.storage.s3.embedded:
            from storage.s3server import SeaweedServer

            s3 = SeaweedServer.from_config(cfg.storage.s3, anchor=cfg.storage.anchor)
            s3.die_with_parent = True  # started from the main thread: gone with this process
            print(f"starting S3 server (SeaweedFS) on {s3.endpoint} ...", flush=True)
            s3.start()
            hub_env["EVALWATCH_S3_ENDPOINT"] = s3.endpoint

        # The hub's and the agents' logs rotate by size (hub.log_max_mb / the agent's default);
        # the .out files keep only what is printed outside logging (a crash's traceback).
        hub_log = cfg.hub.log_file or str(logs_dir / "hub.log")
        hub = Child("hub", python_cmd("hub", "--config", args.config, "--log-file", hub_log),
                    logs_dir / "hub.out", hub_env)
        children.append(hub)
        print("starting hub ...", flush=True)
        hub.start()
        # A hub serving HTTPS (hub.tls_cert): the local agents pin its certificate.
        pin = _hub_pin(cfg)
        scheme = "https" if pin else "http"
        wait_http(f"{scheme}://{cfg.hub.listen_host}:{cfg.hub.listen_port}/healthz", 120, hub,
                  verify=hub_ssl(cert_sha256=pin) if pin else True)

        if not args.no_agents:
            for site in cfg.sites:
                pin_args = ["--hub-cert-sha256", pin] if pin and not site.hub_cert_sha256 else []
                agent = Child(
                    f"agent:{site.id}",
                    python_cmd("agent", "--config", args.config, "--site", site.id, *pin_args,
                               "--log-file", str(logs_dir / f"agent-{site.id}.log")),
                    logs_dir / f"agent-{site.id}.out",
                )
                children.append(agent)
                agent.start()

        _print_banner(cfg, logs_dir, n_agents=0 if args.no_agents else len(cfg.sites))
        started = time.monotonic()
        while not stopping:
            for c in children:
                if not c.alive():
                    code = c.proc.returncode if c.proc else None
                    print(f"{c.name} exited (code {code}); see {c.log_path}", file=sys.stderr)
                    if c is hub:
                        return 1
                    c.start()  # agents are restarted: a room PC's service manager would do this
            if args.exit_after is not None and time.monotonic() - started > args.exit_after:
                break
            time.sleep(0.5)
        return 0
    except RuntimeError as e:
        print(f"evalwatch run: {e}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        for c in reversed(children):
            c.stop()
        if s3 is not None:
            if s3.running:  # weed server exits ~15 s after SIGTERM (s3server.WEED_SERVER_STOP_S)
                print(f"stopping S3 server (SeaweedFS closes its store and volumes, up to "
                      f"{s3.grace_s:.0f} s) ...", flush=True)
            s3.stop()


def _print_banner(cfg: object, logs_dir: Path, n_agents: int) -> None:
    from config.models import EvalwatchConfig

    assert isinstance(cfg, EvalwatchConfig)
    n_cams = len(cfg.cameras())
    lines = [
        "",
        "=" * 64,
        f"  evalwatch dashboard:  {cfg.hub.url}/",
        f"  {len(cfg.sites)} sites, {n_cams} cameras, {n_agents} simulated agents",
        "  demo logins (from the generated secrets file, not logged):",
    ]
    for u in cfg.users:
        pw = u.password.get_secret_value() if u.password else "(set in the database)"
        lines.append(f"    {u.role:<10} {u.username:<12} {pw}")
    if cfg.hub.force_password_change:
        lines.append("  (each must choose a new password at the first login: hub.force_password_change)")
    lines += [f"  logs: {logs_dir}/", "  Ctrl-C stops everything.", "=" * 64, ""]
    print("\n".join(lines), flush=True)
