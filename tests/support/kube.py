"""A real etcd + kube-apiserver for the tests, built by hack/build-k8s.sh and started on loopback.

RBAC authorization is on; the admin is a static token in group system:masters; more identities are
static token users (alice, bob, ...) or service accounts whose tokens come from the TokenRequest API.
No controllers run: namespaces are never fully deleted and there is no garbage collection, so tests
use a fresh namespace each and never wait for either.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S_VERSION = (ROOT / "tests" / "k8s-tools" / "VERSION").read_text().strip()
# Static identities for RBAC and admission tests: name -> groups.
STATIC_USERS = {
    "admin": ["system:masters"],
    "alice": ["dbops-users", "team-a"],
    "bob": ["dbops-users", "team-b"],
    "mallory": ["nobody"],
}


def bin_dir() -> pathlib.Path:
    """Where hack/build-k8s.sh caches the binaries (same rule as the script)."""
    if os.environ.get("DBOPS_K8S_BIN"):
        return pathlib.Path(os.environ["DBOPS_K8S_BIN"])
    cache = os.environ.get("DBOPS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dbops"
    )
    return pathlib.Path(cache) / "k8s" / K8S_VERSION / "bin"


def require_binaries() -> pathlib.Path:
    """Fail (never skip) with the way out when a binary is missing."""
    d = bin_dir()
    missing = [b for b in ("etcd", "kube-apiserver", "kubectl") if not (d / b).is_file()]
    if missing:
        raise RuntimeError(
            f"missing {', '.join(missing)} in {d}: build them with `make k8s` "
            f"(hack/build-k8s.sh, Kubernetes {K8S_VERSION} from the Go module proxy)"
        )
    return d


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Any, what: str, timeout: float, log: pathlib.Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not become ready in {timeout}s; log tail:\n{tail}")


@dataclass
class Cluster:
    """A running API server, and what a test needs to talk to it as different identities."""

    workdir: pathlib.Path
    bin: pathlib.Path
    server: str
    ca_file: pathlib.Path
    tokens: dict[str, str]
    kubeconfig: pathlib.Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # name (etcd, kube-apiserver) -> (argv, log): what `restart` starts again, with the same data.
    commands: dict[str, tuple[list[str], pathlib.Path]] = field(default_factory=dict)
    # The CA of the client certificate this API server presents to admission webhooks (its admission
    # configuration): an operator given DBOPS_WEBHOOK_CLIENT_CA=<this> admits only this API server.
    webhook_client_ca: pathlib.Path | None = None

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return self.procs[list(self.commands).index(name)]

    def stop_process(self, name: str) -> None:
        """Stop etcd or kube-apiserver (SIGKILL: an outage, not a shutdown), keeping its data."""
        proc = self.process(name)
        proc.kill()
        proc.wait(timeout=30)

    def start_process(self, name: str) -> None:
        """Start a stopped etcd or kube-apiserver again with the same flags, data and port."""
        argv, log = self.commands[name]
        index = list(self.commands).index(name)
        self.procs[index] = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            headers = {"Authorization": f"Bearer {self.tokens['admin']}"}
            return (
                requests.get(f"{self.server}/readyz", headers=headers, verify=str(self.ca_file), timeout=2).text == "ok"
            )
        except requests.RequestException:
            return False

    def kubeconfig_for(self, user: str, token: str | None = None, namespace: str = "default") -> pathlib.Path:
        """A kubeconfig file for a static user or an explicit token (e.g. a service account's)."""
        path = self.workdir / f"kubeconfig-{user}-{uuid.uuid4().hex[:6]}"
        path.write_text(
            yaml.safe_dump(_kubeconfig(self.server, self.ca_file, user, token or self.tokens[user], namespace))
        )
        return path

    def kubectl(
        self,
        *args: str,
        user: str = "admin",
        kubeconfig: pathlib.Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        cfg = kubeconfig or (self.kubeconfig if user == "admin" else self.kubeconfig_for(user))
        proc = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={cfg}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(
        self, manifest: dict[str, Any] | str, user: str = "admin", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", input=text, user=user, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name

    def service_account_token(self, namespace: str, name: str, audience: str | None = None) -> str:
        """Mint a real token for a service account through the TokenRequest API."""
        self.kubectl("create", "serviceaccount", name, "-n", namespace, check=False)
        args = ["create", "token", name, "-n", namespace, "--duration=2h"]
        if audience:
            args.append(f"--audience={audience}")
        return self.kubectl(*args).stdout.strip()

    def wait_for(
        self, kind: str, name: str, namespace: str, predicate: Any, timeout: float = 60, what: str = "condition"
    ) -> dict[str, Any]:
        """Poll an object until predicate(obj) is true; fail with the last object seen."""
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            proc = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
            if proc.returncode == 0:
                obj = json.loads(proc.stdout)
                if predicate(obj):
                    return obj
            time.sleep(0.3)
        raise AssertionError(
            f"{kind}/{name}: {what} not reached in {timeout}s; last seen:\n{json.dumps(obj.get('status'), indent=1)}"
        )

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        out = self.kubectl(
            "get", "events", "-n", namespace, "-o", "json", f"--field-selector=involvedObject.name={name}"
        ).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _kubeconfig(server: str, ca: pathlib.Path, user: str, token: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dbops-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "dbops-test", "user": user, "namespace": namespace}}],
        "current-context": user,
    }


def _service_account_key(workdir: pathlib.Path) -> pathlib.Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = workdir / "sa.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return path


def _webhook_client_identity(workdir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A CA and a client certificate from it that kube-apiserver presents to every admission webhook
    (AdmissionConfiguration -> kubeConfigFile, user "*"). Returns (the admission config, the CA)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbops-test webhook client CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-webhook-client")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = workdir / "webhook-client-ca.crt"
    ca_file.write_bytes(ca.public_bytes(pem))
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    users = [
        {
            "name": "*",
            "user": {
                "client-certificate-data": base64.b64encode(client.public_bytes(pem)).decode(),
                "client-key-data": base64.b64encode(key_pem).decode(),
            },
        }
    ]
    kubeconfig = workdir / "admission-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": users}))
    plugin = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    admission = workdir / "admission.yaml"
    admission.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [{"name": "ValidatingAdmissionWebhook", "configuration": plugin}],
            }
        )
    )
    return admission, ca_file


def start(workdir: pathlib.Path) -> Cluster:
    """Start etcd and kube-apiserver under workdir; return when /readyz answers ok."""
    binaries = require_binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    tokens = {user: uuid.uuid4().hex for user in STATIC_USERS}
    token_file = workdir / "tokens.csv"
    token_file.write_text("".join(f'{tokens[u]},{u},uid-{u},"{",".join(g)}"\n' for u, g in STATIC_USERS.items()))
    sa_key = _service_account_key(workdir)
    admission, webhook_client_ca = _webhook_client_identity(workdir)
    cert_dir = workdir / "certs"
    procs: list[subprocess.Popen[bytes]] = []
    commands: dict[str, tuple[list[str], pathlib.Path]] = {}
    etcd_log = workdir / "etcd.log"
    commands["etcd"] = (
        [
            str(binaries / "etcd"),
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        etcd_log,
    )
    procs.append(subprocess.Popen(commands["etcd"][0], stdout=etcd_log.open("wb"), stderr=subprocess.STDOUT))
    _wait(lambda: requests.get(f"http://127.0.0.1:{etcd_port}/health", timeout=2).ok, "etcd", 30, etcd_log)
    api_log = workdir / "kube-apiserver.log"
    server = f"https://127.0.0.1:{api_port}"
    commands["kube-apiserver"] = (
        [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={cert_dir}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={token_file}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={server}/",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--api-audiences={server}/,sts.amazonaws.com",
            "--endpoint-reconciler-type=none",
            f"--admission-control-config-file={admission}",
            "--v=1",
        ],
        api_log,
    )
    procs.append(subprocess.Popen(commands["kube-apiserver"][0], stdout=api_log.open("wb"), stderr=subprocess.STDOUT))
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    ca_file = cert_dir / "apiserver.crt"  # self-signed by the server as it starts: trust exactly that
    _wait(
        lambda: (
            ca_file.exists()
            and requests.get(f"{server}/readyz", headers=admin, verify=str(ca_file), timeout=2).text == "ok"
        ),
        "kube-apiserver",
        90,
        api_log,
    )
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, ca_file, "admin", tokens["admin"], "default")))
    return Cluster(workdir, binaries, server, ca_file, tokens, kubeconfig, procs, commands, webhook_client_ca)


def delete_all(cluster: Cluster, namespace: str, kinds: str, timeout: int = 60) -> None:
    """Delete every object of `kinds` in a namespace; what a finalizer still holds after `timeout`
    seconds (its operator gone) is let go, so that nothing outlives the test that made it."""
    done = cluster.kubectl(
        "delete", kinds, "--all", "-n", namespace, f"--timeout={timeout}s", check=False, timeout=timeout + 60
    )
    if done.returncode == 0:
        return
    for name in cluster.kubectl("get", kinds, "-n", namespace, "-o", "name", check=False).stdout.split():
        cluster.kubectl(
            "patch", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
        )


def install_crds(cluster: Cluster, directory: pathlib.Path = ROOT / "crds") -> None:
    """The CRDs, and the MutatingAdmissionPolicy that stamps dbops.dev/requested-by, as shipped."""
    cluster.kubectl("apply", "--server-side", "-f", str(directory))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(directory))
    cluster.kubectl("apply", "--server-side", "-f", str(REQUESTED_BY_POLICY))
    # The API server takes a policy up a moment after it is stored: wait until a dry run is stamped.
    probe = json.dumps(
        {
            "apiVersion": "dbops.dev/v1alpha1",
            "kind": "DBRestore",
            "metadata": {"name": "requested-by-probe", "namespace": "default"},
            "spec": {"source": {"dbSnapshot": "probe"}, "target": {"identifier": "probe"}},
        }
    )
    _wait(
        lambda: (
            "dbops.dev/requested-by"
            in cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=probe, check=False).stdout
        ),
        "the MutatingAdmissionPolicy dbops-requested-by",
        60,
        cluster.workdir / "kube-apiserver.log",
    )


REQUESTED_BY_POLICY = ROOT / "manifests" / "base" / "admission-requested-by.yaml"


def cluster_session(tmp_root: pathlib.Path) -> Iterator[Cluster]:
    """Body of the session fixture: start, export KUBECONFIG for kopf/kubectl children, tear down."""
    cluster = start(tmp_root / "k8s")
    try:
        install_crds(cluster)
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        yield cluster
    finally:
        cluster.stop()
        if os.environ.get("DBOPS_KEEP_CLUSTER_DIR") is None:
            shutil.rmtree(cluster.workdir / "etcd", ignore_errors=True)


class Watch:
    """`kubectl get -w -o json` in the background: every version of an object, in order.

    Used to prove what `kubectl get dbrestore -w` shows a user, including short-lived phases.
    """

    def __init__(self, cluster: Cluster, kind: str, namespace: str) -> None:
        self._proc = subprocess.Popen(
            [
                str(cluster.bin / "kubectl"),
                f"--kubeconfig={cluster.kubeconfig}",
                "get",
                kind,
                "-n",
                namespace,
                "-w",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.objects: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder, buf = json.JSONDecoder(), ""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            buf += line
            try:
                obj, end = decoder.raw_decode(buf.strip())
            except json.JSONDecodeError:
                continue
            self.objects.append(obj)
            buf = buf.strip()[end:]

    def phases(self, name: str) -> list[str]:
        """Distinct consecutive phases the named object went through."""
        seen: list[str] = []
        for obj in self.objects:
            phase = (obj.get("status") or {}).get("phase")
            if obj["metadata"]["name"] == name and phase and (not seen or seen[-1] != phase):
                seen.append(phase)
        return seen

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
