"""``evalwatch site ...``: a site's agents from the hub's command line.

    evalwatch site enroll-code  SITE [--hours H] [--config FILE]   a one-time enrolment code (shown once)
    evalwatch site revoke-agent SITE [ID] [--config FILE]          revoke one credential, or all of SITE's
    evalwatch site agents       [SITE] [--config FILE] [--json]    the enrolled credentials

The code goes to the room PC: ``evalwatch agent enroll https://HUB --code CODE`` (docs/agent.md).
It is valid ``--hours`` (default ``hub.enroll_code_hours``, 24) and once; the hub keeps only its
hash.  Every issue and revocation is in the audit log (actor ``cli:<os user>``); a revoked
credential is refused by the running hub from its next request on (the hub checks the database).

Exit codes: 0 success; 1 database unreachable; 2 bad arguments (unknown site or credential).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from evalwatch.clitools import CliError, cli_actor, load_cfg, open_db, parse_args, run_cli

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalwatch site", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    code = sub.add_parser("enroll-code", help="a one-time enrolment code for SITE's agent")
    code.add_argument("site")
    code.add_argument("--hours", type=float, help="validity (default: hub.enroll_code_hours)")
    rev = sub.add_parser("revoke-agent", help="revoke an agent credential (all of SITE's without ID)")
    rev.add_argument("site")
    rev.add_argument("id", nargs="?", help="credential id (evalwatch site agents)")
    ls = sub.add_parser("agents", help="list the enrolled agent credentials")
    ls.add_argument("site", nargs="?")
    ls.add_argument("--json", action="store_true")
    for s in (code, rev, ls):
        s.add_argument("--config", default="config/default.yaml", help="the hub's config file")
    return p


def cli(argv: list[str]) -> int:
    args = parse_args(_parser(), argv)
    if isinstance(args, int):
        return args

    async def main() -> int:
        from dashboard import audit
        from storage import agents

        cfg = load_cfg(args.config)
        site = args.site
        if site is not None and site not in {s.id for s in cfg.sites}:
            raise CliError(f"no site {site!r} in {args.config} (sites: {', '.join(s.id for s in cfg.sites)})")
        actor = cli_actor()
        db = open_db(cfg)
        try:
            if args.cmd == "enroll-code":
                hours = cfg.hub.enroll_code_hours if args.hours is None else args.hours
                if not 0 < hours <= 24 * 30:
                    raise CliError(f"--hours must be above 0 and at most 720, got {hours:g}")

                def issue(s: Session) -> agents.IssuedCode:
                    code = agents.issue_code(s, site, actor, timedelta(hours=hours))
                    audit.add(
                        s,
                        actor,
                        "enroll_code_issue",
                        target=f"site:{site}",
                        details={"code_id": code.id, "expires_at": code.expires_at.isoformat()},
                    )
                    return code

                issued = await db.run(issue)
                print(
                    f"enrolment code for site {site} (shown once, valid until "
                    f"{issued.expires_at.isoformat(timespec='seconds')}):\n\n    {issued.code}\n\n"
                    f"on the room PC: evalwatch agent enroll {cfg.hub.url} --code {issued.code}"
                )
                return 0
            if args.cmd == "revoke-agent":

                def revoke(s: Session) -> list[str]:
                    ids = agents.revoke(s, site, args.id, actor)
                    if ids:
                        audit.add(
                            s, actor, "agent_revoke", target=f"site:{site}", details={"credentials": ids}
                        )
                    return ids

                ids = await db.run(revoke)
                if args.id is not None and not ids:
                    raise CliError(f"site {site!r} has no live agent credential {args.id!r}")
                print(f"revoked {len(ids)} agent credential(s) of site {site}: {', '.join(ids) or '-'}")
                return 0
            rows = await db.run(
                lambda s: [
                    {
                        "id": c.id,
                        "site": c.site,
                        "created_at": c.created_at.isoformat(),
                        "enrolled_ip": c.enrolled_ip,
                        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                        "revoked_by": c.revoked_by,
                    }
                    for c in agents.credentials(s, site)
                ]
            )
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    state = f"revoked {r['revoked_at']} by {r['revoked_by']}" if r["revoked_at"] else "active"
                    print(
                        f"{r['site']:<12} {r['id']:<14} enrolled {r['created_at']} "
                        f"from {r['enrolled_ip'] or '-'}  {state}"
                    )
            return 0
        finally:
            db.dispose()

    return run_cli("evalwatch site", main)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
