"""The IAM policy terraform deploys (terraform/policy.json.tftpl) grants exactly what the operator calls.

The operator's AWS calls are derived from its code, not listed by hand: every string literal in
operator/dbops that is the boto3 name of an RDS operation (whether it goes to rds.call, rds.paginate,
rds.describe or a planned Call(...)), and every method called on an `rds.client(region, "SERVICE")` of
another service (SES). botocore's service models turn the names into IAM actions. A few actions are
needed without being called ("dependent actions", from the Service Authorization Reference): they are
tied below to the request parameter in the code that needs them, so they go when it goes.

A new `rds.call(region, "describe_db_proxies")` makes test_policy_actions_are_exactly_the_calls fail
until the policy grants rds:DescribeDBProxies (test_a_new_call_is_noticed proves the scanner sees it).
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
from functools import cache
from typing import Any

import botocore.session
from botocore import xform_name

from dbops.core import types
from dbops.restore import removal
from tests.support.kube import ROOT

OPERATOR = ROOT / "operator" / "dbops"
TERRAFORM = ROOT / "terraform"
TEMPLATE = TERRAFORM / "policy.json.tftpl"

# Request parameters whose presence makes AWS authorize another action too.
DEPENDENT_ACTIONS = {
    # Tags on a create/restore call: RDS authorizes rds:AddTagsToResource as well (tag on create).
    "Tags": {"rds:AddTagsToResource"},
    # RDS creates (and tags) the master user secret in Secrets Manager on the caller's behalf.
    "ManageMasterUserPassword": {"secretsmanager:CreateSecret", "secretsmanager:TagResource"},
}
# Actions that another action needs as dbops calls it: AssumeRole always carries session tags (namespace,
# object, requester), which STS authorizes as sts:TagSession.
ACTION_DEPENDENT = {"sts:AssumeRole": {"sts:TagSession"}}
# The client calls on other services: (client, method) calls, not string literals.
CLIENT_HELPERS = {"client"}
CALL_SITES = {"call": 1, "paginate": 1, "Call": 0}  # function name -> index of its operation argument


@cache
def _service_ops(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, from botocore's model of the service."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@cache
def _iam_prefix(service: str) -> str:
    return str(botocore.session.get_session().get_service_model(service).signing_name)


def _sources() -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for p in sorted(OPERATOR.rglob("*.py"))
        if "migrations" not in p.parts  # alembic migrations run against the audit database, not AWS
    }


def _func_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _client_method(where: str, client: ast.Call, method: str, actions: set[str], problems: list[str]) -> None:
    """`client(region, SERVICE).method(...)`: the IAM action of that method of that service."""
    if _func_name(client.func) not in CLIENT_HELPERS:
        return
    service_arg = client.args[1] if len(client.args) > 1 else None
    for kw in client.keywords:
        if kw.arg == "service":
            service_arg = kw.value
    if service_arg is None:
        service = "rds"
    elif isinstance(service_arg, ast.Constant) and isinstance(service_arg.value, str):
        service = service_arg.value
    else:
        problems.append(f"{where}: client() with a service that is not a literal")
        return
    ops = _service_ops(service)
    if method in ops:
        actions.add(f"{_iam_prefix(service)}:{ops[method]}")
    elif method not in {"get_paginator", "get_waiter", "can_paginate"}:
        problems.append(f"{where}: the {service} client has no {method}")


def derived_actions(sources: dict[str, str]) -> tuple[set[str], list[str]]:
    """The IAM actions the code needs, and problems found at call sites (unknown operation names)."""
    rds_ops = _service_ops("rds")
    actions: set[str] = set()
    params: set[str] = set()
    problems: list[str] = []
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in rds_ops:
                actions.add(f"rds:{rds_ops[node.value]}")
            if isinstance(node, ast.keyword) and node.arg:
                params.add(node.arg)
            if isinstance(node, ast.Dict):
                params.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
            if not isinstance(node, ast.Call):
                continue
            name = _func_name(node.func)
            # rds.call(region, "op"), rds.paginate(region, "op", ...), Call("op", {...}): a literal
            # operation name must be a real RDS operation (a typo would otherwise just be ignored).
            if name in CALL_SITES and len(node.args) > CALL_SITES[name]:
                arg = node.args[CALL_SITES[name]]
                if isinstance(arg, ast.Constant) and arg.value not in rds_ops:
                    problems.append(f"{path}:{node.lineno}: {name}(... {arg.value!r}) is no RDS operation")
            # rds.client(region, "ses").send_email(...): a method of another service's client.
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call):
                _client_method(f"{path}:{node.lineno}", node.func.value, node.func.attr, actions, problems)
    return actions | _dependent(actions, params), problems


def _dependent(actions: set[str], params: set[str]) -> set[str]:
    """What the calls found need besides: by a request parameter they pass, or by another action."""
    needed = {a for param, needs in DEPENDENT_ACTIONS.items() if param in params for a in needs}
    return needed | {a for action, needs in ACTION_DEPENDENT.items() if action in actions for a in needs}


def rendered_policy() -> dict[str, Any]:
    """policy.json.tftpl as terraform renders it, with example values for its variables."""
    text = TEMPLATE.read_text()
    values = {
        "partition": "aws",
        "account_id": "123456789012",
        "regions": json.dumps(["us-east-1"]),
        "ses_from_addresses": json.dumps(["dbops@example.com"]),
        "tenant_role_arns": json.dumps(["arn:aws:iam::111111111111:role/dbops-team-b"]),
    }
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text and "%{" not in text, "the template has a variable this test does not know"
    policy: dict[str, Any] = json.loads(text)
    return policy


def _statements() -> list[dict[str, Any]]:
    return [
        {**s, "Action": _list(s["Action"]), "Resource": _list(s["Resource"])} for s in rendered_policy()["Statement"]
    ]


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_terraform_deploys_this_template() -> None:
    main = (TERRAFORM / "main.tf").read_text()
    call = re.search(r'templatefile\("\$\{path\.module\}/policy\.json\.tftpl", \{(.*?)\}\)', main, re.S)
    assert call, "terraform/main.tf no longer renders policy.json.tftpl"
    passed = set(re.findall(r"^\s*(\w+)\s*=", call.group(1), re.M))
    used = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert passed == used, (passed, used)
    assert "policy      = jsonencode(local.policy)" in main
    # The only statements terraform may drop: SES (no sender address), AssumeRole (no tenant role).
    assert re.findall(r's\.Sid != "(\w+)"', main) == ["SendNotificationEmail", "AssumeTenantRoles"]


def test_the_operator_code_is_scanned_without_problems() -> None:
    actions, problems = derived_actions(_sources())
    assert not problems, "\n".join(problems)
    assert {"rds:DescribeDBInstances", "rds:RestoreDBInstanceFromDBSnapshot", "ses:SendEmail"} <= actions


def test_policy_actions_are_exactly_the_calls() -> None:
    code, _ = derived_actions(_sources())
    granted = {a for s in _statements() for a in s["Action"]}
    assert all(s["Effect"] == "Allow" for s in _statements())
    assert not {a for a in granted if "*" in a}, "no wildcard actions"
    missing, extra = sorted(code - granted), sorted(granted - code)
    assert not missing and not extra, (
        f"terraform/policy.json.tftpl is out of step with operator/dbops: grant {missing}, remove {extra}"
    )


def test_a_new_call_is_noticed() -> None:
    sources = _sources()
    before, _ = derived_actions(sources)
    sources["operator/dbops/new.py"] = 'from dbops import rds\nrds.call("us-east-1", "describe_db_proxies")\n'
    after, problems = derived_actions(sources)
    assert after - before == {"rds:DescribeDBProxies"} and not problems
    sources["operator/dbops/new.py"] = 'from dbops import rds\nrds.call("us-east-1", "describe_db_proxy")\n'
    assert derived_actions(sources)[1], "a misspelt operation must be reported"


def _condition(statement: dict[str, Any], test: str, key: str) -> Any:
    return statement.get("Condition", {}).get(test, {}).get(key)


def test_creates_and_restores_only_with_the_managed_by_tag() -> None:
    tag = f"aws:RequestTag/{types.MANAGED_BY_TAG}"
    tags = types.ownership_tags("uid", "ns", "name", "DBRestore")
    (value,) = [t["Value"] for t in tags if t["Key"] == types.MANAGED_BY_TAG]
    for s in _statements():
        writes = [a for a in s["Action"] if re.match(r"rds:(Create|Restore|AddTags)", a)]
        if writes:
            assert _condition(s, "StringEquals", tag) == value, (s["Sid"], writes)


def test_modifies_and_deletes_only_what_dbops_tagged() -> None:
    tag = f"aws:ResourceTag/{types.MANAGED_BY_TAG}"
    final = removal.final_snapshot_name("orders", "0123456789abcdef")
    assert final.startswith("orders-final-")
    for s in _statements():
        if not [a for a in s["Action"] if re.match(r"rds:(Modify|Delete|RemoveTags)", a)]:
            continue
        if _condition(s, "StringEquals", tag) == "dbops":
            assert all(re.search(r":(db|cluster):\*$", r) for r in s["Resource"]), s["Sid"]
            continue
        # Without the tag condition: only the final snapshot a delete creates (it does not exist yet,
        # so it has no tags), named as removal.final_snapshot_name names it.
        assert set(s["Action"]) <= {"rds:DeleteDBInstance", "rds:DeleteDBCluster"}, s["Sid"]
        for resource in s["Resource"]:
            kind, pattern = resource.split(":")[-2:]
            assert kind in ("snapshot", "cluster-snapshot") and pattern == "*-final-*", resource


def test_describes_are_unconditioned_on_tags_and_everything_is_region_scoped() -> None:
    for s in _statements():
        if all(a.startswith("rds:Describe") for a in s["Action"]):
            assert s["Resource"] == ["*"]  # Describe* with filters needs "*"
            assert not any("Tag" in k for c in s.get("Condition", {}).values() for k in c)
        if any(a.startswith("rds:") for a in s["Action"]):
            assert _condition(s, "StringLike", "aws:RequestedRegion") == ["us-east-1"], s["Sid"]
    (ses,) = [s for s in _statements() if any(a.startswith("ses:") for a in s["Action"])]
    assert _condition(ses, "StringEquals", "ses:FromAddress") == ["dbops@example.com"]


def test_sources_are_found() -> None:
    files = {pathlib.Path(p).name for p in _sources()}
    assert {"aws.py", "controller.py", "plan.py", "observe.py", "notify.py"} <= files


def test_tenant_roles_may_only_be_assumed_and_tagged() -> None:
    (tenant,) = [s for s in _statements() if any(a.startswith("sts:") for a in s["Action"])]
    assert tenant["Sid"] == "AssumeTenantRoles"
    assert sorted(tenant["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert tenant["Resource"] == ["arn:aws:iam::111111111111:role/dbops-team-b"]  # the variable, nothing wider


def test_the_tenant_role_module_does_the_restores_and_trusts_only_the_operator() -> None:
    """modules/tenant-role: the operator's own RDS statements (from the same template, so they cannot
    drift), none of its SES or STS ones; trust for the operator's role, its ExternalId and the namespaces."""
    module = (TERRAFORM / "modules" / "tenant-role" / "main.tf").read_text()
    assert 'templatefile("${path.module}/../../policy.json.tftpl"' in module
    (listed,) = re.findall(r"rds_statements\s*=\s*\[(.*?)\]", module)
    kept = set(re.findall(r'"(\w+)"', listed))
    rds = {s["Sid"] for s in _statements() if all(a.startswith(("rds:", "secretsmanager:")) for a in s["Action"])}
    assert kept == rds, (kept, rds)
    trust = module.split('data "aws_iam_policy_document" "trust"')[1].split("resource ")[0]
    assert '"sts:AssumeRole", "sts:TagSession"' in trust and "var.operator_role_arn" in trust
    assert '"sts:ExternalId"' in trust and '"aws:RequestTag/dbops.dev/namespace"' in trust
    from dbops.core.types import NAMESPACE_TAG

    assert f"aws:RequestTag/{NAMESPACE_TAG}" in trust  # the session tag dbops sets (policy/store.py)
