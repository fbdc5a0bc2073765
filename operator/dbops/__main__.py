"""Command line: `python -m dbops crds [DIR]` writes the CRDs; `python -m dbops run` starts the operator;
`python -m dbops audit` lists audit records."""

from __future__ import annotations

import argparse
import datetime
import logging
import pathlib
import sys


def _crds(args: argparse.Namespace) -> int:
    from dbops import crdgen

    out = pathlib.Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in crdgen.files().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """Run the operator. /healthz answers first (standard library only, before the heavy imports), then
    kopf watches the objects and the reconcile core (dbops.app) does the work."""
    from dbops import redact

    # First, before any import or setting can log: the redaction sits in the LogRecord factory, so
    # kopf.configure's handlers below, and any added later, only ever see redacted records.
    redact.install()
    from dbops.core.health import Health, early_port

    port = early_port()
    health = Health().serve(port) if port else Health()
    from dbops import settings

    cfg = settings.get()
    import kopf

    from dbops import app, metrics
    from dbops.core import logs

    # JSON: one object per line, the object a line is about under "object"; text: [namespace/name] first.
    log_format = kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, log_format=log_format, log_prefix=None)
    # DBOPS_LOG_LEVEL never takes the library loggers that write request bodies below WARNING; -v (a
    # developer's switch: everything at DEBUG) does, and the redaction still masks the secrets in them.
    logs.settle("DEBUG" if args.verbose else cfg.log_level, libraries=args.verbose)
    if logging.getLogger().level > logging.DEBUG:  # kopf logs every watch event it hands over
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    metrics.serve(cfg.metrics_port)
    if cfg.policy != "namespace":
        app.watch_tenancy()
    if cfg.webhook_port:
        from dbops import webhook

        del webhook  # imported for its kopf registrations (admission handlers and server)
    kopf.run(
        registry=kopf.get_default_registry(),
        memo=kopf.Memo(health=health),
        standalone=True,  # one active replica is the Lease's job (dbops.core.leader), not kopf peering
        clusterwide=not cfg.namespace,
        namespaces=[ns.strip() for ns in cfg.namespace.split(",") if ns.strip()],
    )
    del app  # imported for its kopf registrations
    health.stop()
    return 0


def _when(text: str | None) -> datetime.datetime | None:
    """An ISO time (UTC when no offset is given) or a duration back from now: 30m, 2h, 7d."""
    if not text:
        return None
    now = datetime.datetime.now(datetime.UTC)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - datetime.timedelta(seconds=float(text[:-1]) * units[text[-1]])
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _audit(args: argparse.Namespace) -> int:
    """List audit records, oldest first, as a table, JSON or CSV (an auditor's export: every record)."""
    import json

    from dbops import audit, settings

    url = args.url or settings.get().audit_url.get_secret_value()
    q = audit.Query(
        namespace=args.namespace,
        user=args.user,
        target=args.target,
        name=args.name,
        kind=args.kind,
        action=args.action,
        since=_when(args.since),
        until=_when(args.until),
        limit=args.limit if args.limit is not None else (0 if args.output == "csv" else 200),
    )
    with audit.connect(url) as engine:
        rows = audit.query(engine, q)
    if args.output == "json":
        print(json.dumps(rows, indent=1, default=str))
    elif args.output == "csv":
        sys.stdout.write(audit.render_csv(rows))
    else:
        print(audit.render_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dbops")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("crds", help="render the CustomResourceDefinitions from the models")
    p.add_argument("dir", nargs="?", default="crds")
    p.set_defaults(func=_crds)
    p = sub.add_parser("run", help="run the operator against the current kubeconfig / in-cluster config")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run)
    p = sub.add_parser("audit", help="list audit records (who restored which database, from what, when, outcome)")
    p.add_argument("--url", help="audit database URL (default: DBOPS_AUDIT_URL)")
    p.add_argument("-n", "--namespace")
    p.add_argument("-u", "--user", help="the requesting user")
    p.add_argument("-t", "--target", help="the target DB identifier")
    p.add_argument("--name", help="the DBRestore/DBAttach name")
    p.add_argument("--kind", choices=["DBRestore", "DBAttach", "DBRestoreSchedule"])
    p.add_argument("--action", help="requested, restore-started, available, failed, deleted, drill-passed, ...")
    p.add_argument("--since", help="ISO time (UTC unless given) or a duration back from now: 30m, 2h, 7d")
    p.add_argument("--until", help="ISO time or a duration back from now")
    p.add_argument("--limit", type=int, help="newest N records (default 200; -o csv: all)")
    p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
