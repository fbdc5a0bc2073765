"""A stand-in for AWS (RDS, SES, STS, Secrets Manager...) for the operator's tests.

It is moto's server, served over real HTTP (the operator only knows ``AWS_ENDPOINT_URL``), plus:

* a timed RDS lifecycle: DB instances/clusters created while ``create_seconds > 0`` report
  "creating", then "backing-up", then their real status, like a real restore;
  with ``delete_seconds > 0`` deleted ones linger as "deleting" before they disappear;
* fault injection: the next N calls of an AWS action fail with a given HTTP status and error code;
* delays: the next N calls of an action are carried out, and answered only after some seconds;
* call counting by action name (injected failures included), and who signed each call: the access key id
  of its SigV4 Authorization header, and for keys from STS AssumeRole, the role, ExternalId, session name
  and session tags they were issued for (moto keeps no session tags);
* ``age``: a DB instance's or cluster's creation time moved into the past (its clock, for ttls);
* ``restores``: where a snapshot's data lives: an instance or cluster restored from snapshot X answers at
  the address and port given for X (a real local database loaded with the data "in the snapshot", which
  the operator's verification probes connect to), and optionally takes its own create_seconds;
* a JSON control API under ``/_fakeaws/`` (see ``FakeAWSApp._control``).

Run: ``python -m tests.support.fakeaws --host 127.0.0.1 --port 5000`` from the repository root.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

CONTROL_PREFIX = "/_fakeaws/"
DEFAULT_CONFIG: dict[str, float] = {"create_seconds": 0.0, "delete_seconds": 0.0}

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Fault:
    status: int
    code: str
    message: str
    times: int  # < 0: forever


class State:
    """Everything the control API changes; shared by the request threads and the patched models."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.moto_lock = threading.Lock()  # serializes requests into moto (see FakeAWSApp.__call__)
        self.config = dict(DEFAULT_CONFIG)
        self.faults: dict[str, deque[Fault]] = {}
        self.calls: Counter[str] = Counter()
        # action -> seconds to hold the answer of its next calls (the call is done; only the reply waits)
        self.delays: dict[str, deque[Fault]] = {}
        # Deleted RDS objects kept visible as "deleting": (due, table, key, obj).
        self.lingering: list[tuple[float, dict[str, Any], str, Any]] = []
        # Snapshot identifier -> {"address", "port", "create_seconds"} of what is restored from it.
        self.restores: dict[str, dict[str, Any]] = {}
        self.signed: list[dict[str, str]] = []  # {"action", "access_key"} per call, in order
        self.sessions: dict[str, dict[str, Any]] = {}  # access key id -> what AssumeRole was asked

    def reset(self) -> None:
        with self.lock:
            self.config = dict(DEFAULT_CONFIG)
            self.faults.clear()
            self.delays.clear()
            self.calls.clear()
            self.lingering.clear()
            self.restores.clear()
            self.signed.clear()
            self.sessions.clear()

    def take_fault(self, action: str, table: dict[str, deque[Fault]] | None = None) -> Fault | None:
        with self.lock:
            queue = (self.faults if table is None else table).get(action)
            if not queue:
                return None
            fault = queue[0]
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    queue.popleft()
            return fault

    def purge_deleted(self) -> None:
        """Drop the "deleting" objects whose time is up (lazily, before each AWS call)."""
        now = time.monotonic()
        with self.lock:
            due = [entry for entry in self.lingering if entry[0] <= now]
            self.lingering = [entry for entry in self.lingering if entry[0] > now]
        for _, table, key, obj in due:
            if table.get(key) is obj:
                del table[key]


STATE = State()


# --- Timed RDS lifecycle ----------------------------------------------------------------------------


ENDPOINT_HASH = "FAKEAWS_ENDPOINT_HASH"


def _endpoints_of_one_account(instance: Any, cluster: Any) -> None:
    """With FAKEAWS_ENDPOINT_HASH set (the playground sets the examples' c9akciq32), endpoint hostnames
    carry that hash, as one AWS account's do (moto: aaaaaaaaaa for instances, a random one per cluster),
    so that the examples' hostnames name the stand-in's databases."""
    fixed = os.environ.get(ENDPOINT_HASH)
    if not fixed:
        return
    instance.address = property(lambda self: f"{self.db_instance_identifier}.{fixed}.{self.region}.rds.amazonaws.com")
    original = cluster.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.url_identifier = fixed

    cluster.__init__ = init


def patch_rds_models() -> None:
    """Make moto's DB instances/clusters take time to create (and, optionally, to delete).

    moto's DBInstance is "available" from birth and DBCluster flips "creating" -> "available" on the
    first read of its ``status`` property. Both classes get one ``status`` property instead: the real
    status lives in ``_status`` (the name DBCluster already uses), and while an object is younger than
    the ``create_seconds`` in force when it was built, an "available" real status reads as
    "creating" (first half) or "backing-up" (second half). Patching ``__init__`` covers every way moto
    builds them (create, restore from snapshot, point-in-time restore); restores copy ``__dict__``
    into the new object's kwargs, where our ``_fakeaws_*`` keys are swallowed by ``**kwargs`` and then
    overwritten.
    """
    from moto.rds.exceptions import RDSClientError
    from moto.rds.models import DBCluster, DBInstance, RDSBackend

    if getattr(RDSBackend, "_fakeaws_patched", False):
        return
    RDSBackend._fakeaws_patched = True  # type: ignore[attr-defined]

    def get_status(self: Any) -> str:
        real: str = self.__dict__.get("_status", "available")
        if real == "creating":  # DBCluster's placeholder: our clock decides instead.
            real = "available"
        born: float | None = self.__dict__.get("_fakeaws_born")
        if real == "available" and born is not None:
            elapsed, total = time.monotonic() - born, self.__dict__["_fakeaws_create_seconds"]
            if elapsed < total / 2:
                return "creating"
            if elapsed < total:
                return "backing-up"
        return real

    def set_status(self: Any, value: str) -> None:
        self.__dict__["_status"] = value

    def timed_init(original: Callable[..., None]) -> Callable[..., None]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            seconds = STATE.config["create_seconds"]
            self.__dict__["_fakeaws_born"] = time.monotonic() if seconds > 0 else None
            self.__dict__["_fakeaws_create_seconds"] = seconds

        return init

    for cls in (DBInstance, DBCluster):
        cls.__init__ = timed_init(cls.__init__)  # type: ignore[method-assign]
        cls.status = property(get_status, set_status)  # type: ignore[method-assign,assignment]
    _endpoints_of_one_account(DBInstance, DBCluster)

    # A cluster whose instances are being deleted can itself be deleted (as on AWS).
    members: property = DBCluster.__dict__["_members"]
    DBCluster._members = property(  # type: ignore[method-assign,assignment]
        lambda self: [m for m in members.__get__(self) if m.status != "deleting"]
    )

    def lingering_delete(
        original: Callable[..., Any], table_name: str, id_param: str, error_code: str
    ) -> Callable[..., Any]:
        """moto pops the object at once; put it back as "deleting" for delete_seconds."""

        def delete(self: Any, *args: Any, **kwargs: Any) -> Any:
            identifier: str = kwargs[id_param] if id_param in kwargs else args[0]
            table: dict[str, Any] = getattr(self, table_name)
            if identifier in table and table[identifier].status == "deleting":
                raise RDSClientError(error_code, f"{identifier} is already being deleted.")
            obj = original(self, *args, **kwargs)
            seconds = STATE.config["delete_seconds"]
            if seconds > 0:
                obj.status = "deleting"
                table[identifier] = obj
                with STATE.lock:
                    STATE.lingering.append((time.monotonic() + seconds, table, identifier, obj))
            return obj

        return delete

    _patch_restores(DBInstance, DBCluster, RDSBackend)

    RDSBackend.delete_db_instance = lingering_delete(  # type: ignore[method-assign]
        RDSBackend.delete_db_instance, "databases", "db_instance_identifier", "InvalidDBInstanceState"
    )
    RDSBackend.delete_db_cluster = lingering_delete(  # type: ignore[method-assign]
        RDSBackend.delete_db_cluster, "clusters", "cluster_identifier", "InvalidDBClusterStateFault"
    )


def _patch_restores(instance_cls: Any, cluster_cls: Any, backend_cls: Any) -> None:
    """What is restored from a snapshot with an entry in STATE.restores answers at that entry's address and
    port (DescribeDB* report it as the endpoint), and takes the entry's create_seconds if it has one."""
    address: property = instance_cls.__dict__["address"]
    instance_cls.address = property(lambda self: self.__dict__.get("_fakeaws_address") or address.__get__(self))
    cluster_endpoint: property = cluster_cls.__dict__["endpoint"]
    cluster_cls.endpoint = property(
        lambda self: self.__dict__.get("_fakeaws_address") or cluster_endpoint.__get__(self)
    )

    def from_snapshot(original: Callable[..., Any]) -> Callable[..., Any]:
        def restore(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
            obj = original(self, from_snapshot_id, overrides)
            with STATE.lock:
                entry = STATE.restores.get(from_snapshot_id.rsplit(":", 1)[-1])
            if entry is not None:
                obj.__dict__["_fakeaws_address"] = entry["address"]
                obj.port = int(entry["port"])
                if entry.get("create_seconds") is not None:
                    obj.__dict__["_fakeaws_born"] = time.monotonic()
                    obj.__dict__["_fakeaws_create_seconds"] = float(entry["create_seconds"])
            return obj

        return restore

    backend_cls.restore_db_instance_from_db_snapshot = from_snapshot(backend_cls.restore_db_instance_from_db_snapshot)
    backend_cls.restore_db_cluster_from_snapshot = from_snapshot(backend_cls.restore_db_cluster_from_snapshot)


# --- WSGI layer: control API, call counting, fault injection -----------------------------------------


def aws_action(environ: dict[str, Any]) -> tuple[str, bool]:
    """The AWS action of a request, and whether the service speaks the JSON protocol.

    Query-protocol services (RDS, SES v1, STS, EC2) POST a form-encoded body with ``Action=...``;
    JSON-protocol ones (Secrets Manager) name it in ``X-Amz-Target: secretsmanager.GetSecretValue``.
    Anything else (REST services such as SES v2) is named by method and path.
    """
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1], True
    form = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
    if form and environ.get("CONTENT_LENGTH"):  # botocore always sends a length for these
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        action = parse_qs(body.decode("utf-8")).get("Action")
        if action:
            return action[0], False
    query_action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if query_action:
        return query_action[0], False
    return f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}", False


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_ACCESS_KEY = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")


def signer(environ: dict[str, Any]) -> str:
    """The access key id a request was signed with (SigV4), or "" for an unsigned one."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else ""


def assumed(environ: dict[str, Any], body: bytes) -> tuple[str, dict[str, Any]] | None:
    """(access key id, the role, ExternalId, session name and tags asked) of an AssumeRole answer."""
    key = _ACCESS_KEY.search(body)
    if key is None:
        return None
    form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].getvalue().decode()).items()}
    tags = {
        form[f"Tags.member.{n}.Key"]: form.get(f"Tags.member.{n}.Value", "")
        for n in range(1, 51)
        if f"Tags.member.{n}.Key" in form
    }
    asked = {"role_arn": form.get("RoleArn"), "external_id": form.get("ExternalId"), "tags": tags}
    return key.group(1).decode(), {**asked, "session_name": form.get("RoleSessionName")}


def error_response(fault: Fault, json_protocol: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS error as botocore parses it, so its retry logic treats it as it would AWS's."""
    request_id = str(uuid.uuid4())
    status = f"{fault.status} {'Error' if fault.status >= 400 else 'OK'}"
    if json_protocol:
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        kind = "Receiver" if fault.status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(fault.code)}</Code>"
            f"<Message>{escape(fault.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", request_id),
    ]
    return status, headers, body


class FakeAWSApp:
    """WSGI middleware in front of moto's DomainDispatcherApplication."""

    def __init__(self, moto_app: WSGIApp, state: State = STATE) -> None:
        self.moto_app = moto_app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        if path.startswith("/moto-api") or path == "/favicon.ico":
            return self.moto_app(environ, start_response)
        action, json_protocol = aws_action(environ)
        self.state.purge_deleted()
        with self.state.lock:
            self.state.calls[action] += 1
            self.state.signed.append({"action": action, "access_key": signer(environ)})
        fault = self.state.take_fault(action)
        if fault is not None:
            status, headers, body = error_response(fault, json_protocol)
            start_response(status, headers)
            return [body]
        # moto's RDS backend is not thread-safe (a filtered describe racing a restore raises
        # "OrderedDict mutated during iteration" and answers 500); AWS itself never fails that way, so
        # requests reach moto one at a time, bodies produced inside the lock.
        with self.state.moto_lock:
            body = list(self.moto_app(environ, start_response))
        if action == "AssumeRole" and isinstance(environ.get("wsgi.input"), io.BytesIO):
            session = assumed(environ, b"".join(body))
            if session is not None:
                with self.state.lock:
                    self.state.sessions[session[0]] = session[1]
        delay = self.state.take_fault(action, self.state.delays)
        if delay is not None:  # done in AWS, answered late: what a client that dies meanwhile never sees
            time.sleep(float(delay.message))
        return body

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:  # noqa: PLR0912
        method: str = environ["REQUEST_METHOD"]
        route = environ["PATH_INFO"][len(CONTROL_PREFIX) :].strip("/")
        state = self.state
        result: Any
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            payload: dict[str, Any] = json.loads(environ["wsgi.input"].read(length) or b"{}")
            if route == "config" and method == "GET":
                result = dict(state.config)
            elif route == "config" and method == "POST":
                unknown = set(payload) - set(DEFAULT_CONFIG)
                if unknown:
                    raise ValueError(f"unknown config keys: {sorted(unknown)}")
                with state.lock:
                    state.config.update({key: float(value) for key, value in payload.items()})
                result = dict(state.config)
            elif route == "faults" and method == "POST":
                fault = Fault(
                    status=int(payload.get("status", 400)),
                    code=str(payload["code"]),
                    message=str(payload.get("message", "Injected by fakeaws")),
                    times=int(payload.get("times", 1)),
                )
                if fault.times == 0:
                    raise ValueError("times must be positive, or negative for 'always'")
                with state.lock:
                    state.faults.setdefault(str(payload["action"]), deque()).append(fault)
                result = {"ok": True}
            elif route == "delays" and method == "POST":
                delay = Fault(200, "Delay", str(float(payload["seconds"])), int(payload.get("times", 1)))
                with state.lock:
                    state.delays.setdefault(str(payload["action"]), deque()).append(delay)
                result = {"ok": True}
            elif route == "faults" and method == "GET":
                with state.lock:
                    result = {a: [vars(f) for f in q] for a, q in state.faults.items() if q}
            elif route == "faults" and method == "DELETE":
                with state.lock:
                    state.faults.clear()
                result = {"ok": True}
            elif route == "calls" and method == "GET":
                with state.lock:
                    result = dict(state.calls)
            elif route == "calls" and method == "DELETE":
                with state.lock:
                    state.calls.clear()
                    state.signed.clear()
                result = {"ok": True}
            elif route == "signed" and method == "GET":
                with state.lock:
                    result = {"calls": list(state.signed), "sessions": dict(state.sessions)}
            elif route == "ses-messages" and method == "GET":
                # What SES "sent" (moto keeps it in the backend), every account and region.
                from moto.ses.models import ses_backends

                result = [
                    {
                        "region": region,
                        **{k: getattr(m, k, None) for k in ("source", "subject", "body", "destinations")},
                    }
                    for backends in ses_backends.values()
                    for region, backend in backends.items()
                    for m in backend.sent_messages
                ]
            elif route == "restores" and method == "POST":
                entry = {"address": str(payload["address"]), "port": int(payload["port"])}
                if payload.get("create_seconds") is not None:
                    entry["create_seconds"] = float(payload["create_seconds"])
                with state.lock:
                    state.restores[str(payload["snapshot"])] = entry
                result = {"ok": True}
            elif route == "restores" and method == "GET":
                with state.lock:
                    result = dict(state.restores)
            elif route == "age" and method == "POST":
                result = {"aged": age(str(payload["identifier"]), float(payload["seconds"]))}
            elif route == "reset" and method == "POST":
                from moto.moto_api._internal.models import moto_api_backend

                moto_api_backend.reset()
                state.reset()
                result = {"ok": True}
            else:
                return _json(start_response, "404 Not Found", {"error": f"no route {method} {route}"})
        except (KeyError, TypeError, ValueError) as exc:
            return _json(start_response, "400 Bad Request", {"error": repr(exc)})
        return _json(start_response, "200 OK", result)


def age(identifier: str, seconds: float) -> int:
    """Make a DB instance or cluster older: its creation time moves `seconds` into the past, as if the
    stand-in's clock had run on for it (a ttl of hours is tested without waiting hours)."""
    from datetime import timedelta

    from moto.rds.models import rds_backends

    aged = 0
    with STATE.moto_lock:
        for backends in rds_backends.values():
            for backend in backends.values():
                for table, attr in (
                    (backend.databases, "instance_create_time"),
                    (backend.clusters, "cluster_create_time"),
                ):
                    obj = table.get(identifier)
                    if obj is not None and getattr(obj, attr, None) is not None:
                        setattr(obj, attr, getattr(obj, attr) - timedelta(seconds=seconds))
                        aged += 1
    return aged


def _json(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> FakeAWSApp:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    patch_rds_models()
    return FakeAWSApp(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    # Some moto services build URLs to themselves from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(args.port)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(args.host, args.port, create_app(), threaded=True, request_handler=MotoRequestHandler)
    print(f"fakeaws listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
