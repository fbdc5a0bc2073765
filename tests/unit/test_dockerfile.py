"""The Dockerfile and the Deployment agree, and the image follows the rules of issue 6.

No container engine runs here, so the image is not built in the tests: these checks read the Dockerfile
(checkov's Dockerfile checks run in `make security`), and `pip install --require-hashes --only-binary`
of requirements/runtime.lock is what its build stage does.
"""

from __future__ import annotations

import re
import shlex

import yaml

from tests.support.kube import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _final_stage() -> list[tuple[str, str]]:
    ins = _instructions()
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    return ins[last_from:]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, arg in _final_stage():
        if op == "ENV":
            for pair in shlex.split(arg):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _deployment_env() -> dict[str, str]:
    deploy = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    return {e["name"]: e["value"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}


def test_base_images_pinned_by_exact_tag_and_the_same_in_both_stages() -> None:
    froms = [arg.split()[0] for op, arg in _instructions() if op == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    assert len(set(froms)) == 1, froms
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]


def test_install_uses_the_hashed_lock_only() -> None:
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    assert "--require-hashes" in runs and "requirements/runtime.lock" in runs and "--only-binary=:all:" in runs
    assert "pip install ." not in runs and "pip install -e" not in runs


def test_runtime_user_is_numeric_non_root_and_matches_the_deployment() -> None:
    (user,) = [arg for op, arg in _final_stage() if op == "USER"]
    uid, gid = user.split(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0
    deploy = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    pod = deploy["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_writable_paths_and_ports_agree_with_the_deployment() -> None:
    env, deploy_env = _env(), _deployment_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    for key in ("DBOPS_AUDIT_URL", "DBOPS_AUDIT_SPOOL", "DBOPS_LIVENESS_PORT", "DBOPS_METRICS_PORT"):
        assert env[key] == deploy_env[key], key
    deploy = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    mounts = {m["mountPath"] for m in deploy["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert env["DBOPS_AUDIT_SPOOL"].startswith("/var/lib/dbops/") and "/var/lib/dbops" in mounts
    assert env["DBOPS_AUDIT_URL"] == "sqlite:////var/lib/dbops/audit.db" and "/tmp" in mounts


def test_entrypoint_labels_and_healthcheck() -> None:
    final = dict(_final_stage())
    assert final["ENTRYPOINT"] == '["python", "-m", "dbops"]' and final["CMD"] == '["run"]'
    assert "/healthz" in final["HEALTHCHECK"] and "DBOPS_LIVENESS_PORT" in final["HEALTHCHECK"]
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', final["LABEL"]))
    assert {"title", "source", "licenses", "version", "revision"} <= {k.rsplit(".", 1)[1] for k in labels}


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    copied = {arg.split()[-2] for op, arg in _instructions() if op == "COPY" and "--from" not in arg}
    assert {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")} == {c.rstrip("/") for c in copied}
