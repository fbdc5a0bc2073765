"""Command line: `python -m dbops crds [DIR]` writes the CRDs; `python -m dbops run` starts the operator."""

from __future__ import annotations

import argparse
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
    """Run the operator: kopf with dbops' handlers, standalone (one replica, Recreate strategy)."""
    import kopf

    from dbops import attach_handlers, handlers, settings

    cfg = settings.get()
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.FULL)
    kopf.run(
        registry=kopf.get_default_registry(),
        standalone=True,
        clusterwide=not cfg.namespace,
        namespaces=[ns.strip() for ns in cfg.namespace.split(",") if ns.strip()],
        liveness_endpoint=f"http://0.0.0.0:{cfg.liveness_port}/healthz" if cfg.liveness_port else None,
    )
    del handlers, attach_handlers  # imported for their kopf registrations
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
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
