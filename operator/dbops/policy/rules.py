"""The verdict of the DBPolicies that select a namespace on one request. Pure functions.

Several policies combine so that the most restrictive wins: a request must satisfy each of them (every
list of patterns it is named in, every required tag, the smallest maximum and limit), forced settings
add up (any policy forbidding public access forbids it, tags are merged), and two policies forcing a
setting to different values, or naming different AWS roles, refuse the request until the platform team
settles it. Each violation is one sentence naming the field, the policy and what it allows.

Checked three times, the same way: at admission (the spec alone), before the create calls (what a fresh
read of AWS says of the source or cluster), and on the very create calls planned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dbops.core.types import KIND_TAG, NAMESPACE_TAG, Call
from dbops.models import DBPolicySpec, PolicyAttach, PolicySources, PolicyTargets, duration_seconds
from dbops.policy.request import WORDS, Found, RefKind, Request

PLACEHOLDER = "{namespace}"
NO_POLICY_REASON = "PolicyViolation"


@dataclass(frozen=True)
class Policy:
    name: str
    spec: DBPolicySpec


@dataclass(frozen=True)
class Forced:
    """What the create calls get from the policies when the request leaves it out."""

    subnet_group: str | None = None
    security_groups: tuple[str, ...] | None = None
    deletion_protection: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    restores_in_flight: tuple[int, str] | None = None  # (limit, the policy that sets it)
    databases_owned: tuple[int, str] | None = None


# --- patterns -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _compiled(pattern: str, namespace: str) -> re.Pattern[str]:
    def glob(part: str) -> str:
        return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in part)

    return re.compile(re.escape(namespace).join(glob(part) for part in pattern.split(PLACEHOLDER)) + r"\Z")


def matches(pattern: str, value: str, namespace: str) -> bool:
    """`value` matches the glob `pattern` ({namespace} stands for `namespace`)."""
    return _compiled(pattern, namespace).match(value) is not None


def any_match(patterns: Iterable[str], value: str, namespace: str) -> bool:
    return any(matches(p, value, namespace) for p in patterns)


def outside(patterns: list[str] | None, value: str | None, namespace: str) -> bool:
    """`value` is known and `patterns` restrict it (None: they do not), and it matches none of them."""
    return value is not None and patterns is not None and not any_match(patterns, value, namespace)


def _shown(patterns: Iterable[str], namespace: str) -> str:
    listed = [p.replace(PLACEHOLDER, namespace) for p in patterns]
    return ", ".join(listed) if listed else "none"


def _violation(field_: str, what: str, policy: str, allowed: str) -> str:
    return f"{field_}: {what} is not allowed by DBPolicy {policy}: it allows {allowed}"


# --- at admission: the spec alone ------------------------------------------------------------------------


def not_selected(namespace: str) -> str:
    return (
        f"metadata.namespace: no DBPolicy selects namespace {namespace}, and dbops enforces policies "
        "(DBOPS_POLICY=enforce): ask your platform team for one"
    )


def judge(policies: list[Policy], request: Request) -> list[str]:
    """Every violation of the request, as written, of the policies that select its namespace."""
    out = conflicts(policies, request)
    for p in policies:
        out += _sources(p, request)
        out += _targets(p, request)
        out += _attach(p, request)
    return out


def _source_patterns(src: PolicySources, kind: RefKind) -> list[str] | None:
    return {
        "instance": src.db_instances,
        "cluster": src.db_clusters,
        "snapshot": src.db_snapshots,
        "cluster-snapshot": src.db_cluster_snapshots,
    }[kind]


def _sources(p: Policy, r: Request) -> list[str]:
    src = p.spec.sources
    if src is None or r.kind != "DBRestore":
        return []
    out = []
    for ref in r.sources:
        patterns = _source_patterns(src, ref.kind)
        if outside(patterns, ref.identifier, r.namespace):
            word = WORDS[ref.kind]
            out.append(
                _violation(
                    ref.field, f"{word} {ref.identifier}", p.name, f"{word}s {_shown(patterns or [], r.namespace)}"
                )
            )
    if src.regions is not None and r.region not in src.regions:
        out.append(_violation(r.path("region"), f"region {r.region}", p.name, f"regions {_shown(src.regions, '')}"))
    return out


def _targets(p: Policy, r: Request) -> list[str]:
    tg = p.spec.targets
    if tg is None:
        return []
    out = []
    if tg.identifier_pattern:
        for ident in r.identifiers:
            if not matches(tg.identifier_pattern, ident, r.namespace):
                allowed = f"identifiers matching {_shown([tg.identifier_pattern], r.namespace)}"
                out.append(_violation(r.path("identifier"), f"identifier {ident}", p.name, allowed))
    if r.instance_class and outside(tg.instance_classes, r.instance_class, r.namespace):
        allowed = f"instance classes {_shown(tg.instance_classes or [], r.namespace)}"
        out.append(_violation(r.path("instance_class"), r.instance_class, p.name, allowed))
    if r.public and tg.publicly_accessible is False:
        out.append(_violation(r.path("public"), "true", p.name, "false only (no public databases)"))
    out += _forced_settings(p.name, tg, r)
    out += _ttl(p.name, tg, r)
    return out


def _forced_settings(name: str, tg: PolicyTargets, r: Request) -> list[str]:
    out = []
    if r.subnet_group and tg.db_subnet_group_name and r.subnet_group != tg.db_subnet_group_name:
        out.append(
            _violation(r.path("subnet_group"), r.subnet_group, name, f"{tg.db_subnet_group_name} only (leave it out)")
        )
    forced_groups = tg.vpc_security_group_ids
    if (
        r.security_groups is not None
        and forced_groups is not None
        and sorted(r.security_groups) != sorted(forced_groups)
    ):
        allowed = f"{', '.join(forced_groups)} only (leave it out)"
        out.append(_violation(r.path("security_groups"), ", ".join(r.security_groups), name, allowed))
    if tg.deletion_protection:
        if r.deletion_protection is False:
            out.append(
                _violation(r.path("deletion_protection"), "false", name, "true only (it forces deletion protection)")
            )
        if r.kind == "DBRestore" and r.deletion_policy != "Retain":
            allowed = "Retain only: it forces deletion protection, so dbops could not remove the database"
            out.append(_violation(r.path("deletion_policy"), r.deletion_policy, name, allowed))
    for key, value in sorted((tg.tags or {}).items()):
        if key in r.tags and r.tags[key] != value:
            out.append(_violation(f"{r.path('tags')}.{key}", r.tags[key], name, f"{value} only (leave the tag out)"))
    return out


def _ttl(name: str, tg: PolicyTargets, r: Request) -> list[str]:
    if r.kind != "DBRestore":
        return []
    if tg.ttl_required and not r.ttl:
        most = f" (at most {tg.max_ttl})" if tg.max_ttl else ""
        return [f"{r.path('ttl')}: is required by DBPolicy {name}{most}: the namespace is for previews"]
    if r.ttl and tg.max_ttl and duration_seconds(r.ttl) > duration_seconds(tg.max_ttl):
        return [_violation(r.path("ttl"), r.ttl, name, f"at most {tg.max_ttl}")]
    return []


def _attach(p: Policy, r: Request) -> list[str]:
    at = p.spec.attach
    if r.kind != "DBAttach" or at is None:
        return []
    out = []
    ref = r.cluster
    if ref is not None and outside(at.clusters, ref.identifier, r.namespace):
        allowed = f"clusters {_shown(at.clusters or [], r.namespace)}"
        out.append(_violation(ref.field, f"cluster {ref.identifier}", p.name, allowed))
    if r.readers is not None and at.max_readers is not None and r.readers > at.max_readers:
        out.append(_violation(r.path("readers"), f"{r.readers} readers", p.name, f"at most {at.max_readers}"))
    return out


def conflicts(policies: list[Policy], r: Request) -> list[str]:
    """Policies that force one setting to different values: no request can satisfy both."""
    out = []
    targets = [(p.name, p.spec.targets) for p in policies if p.spec.targets is not None]
    for setting, values in (
        ("subnet_group", {n: t.db_subnet_group_name for n, t in targets if t.db_subnet_group_name}),
        (
            "security_groups",
            {
                n: ", ".join(sorted(t.vpc_security_group_ids))
                for n, t in targets
                if t.vpc_security_group_ids is not None
            },
        ),
    ):
        if len(set(values.values())) > 1:
            out.append(f"{r.path(setting)}: {_disagree(values)}")
    keys = {k for _, t in targets for k in t.tags or {}}
    for key in sorted(keys):
        values = {n: (t.tags or {})[key] for n, t in targets if key in (t.tags or {})}
        if len(set(values.values())) > 1:
            out.append(f"{r.path('tags')}.{key}: {_disagree(values)}")
    roles = {
        p.name: p.spec.aws.role_arn + (f" (ExternalId {p.spec.aws.external_id})" if p.spec.aws.external_id else "")
        for p in policies
        if p.spec.aws
    }
    if len(set(roles.values())) > 1:
        out.append(f"metadata.namespace: {_disagree(roles, 'AWS roles')}")
    return out


def _disagree(values: dict[str, str], what: str = "values") -> str:
    listed = ", ".join(f"{name} sets {value}" for name, value in sorted(values.items()))
    return f"DBPolicies disagree ({listed}): no request can meet them all; ask your platform team to settle the {what}"


# --- before the create calls: what AWS says --------------------------------------------------------------


def judge_found(policies: list[Policy], request: Request, found: list[Found]) -> list[str]:
    """What a fresh read says of the source (DBRestore) or the cluster (DBAttach), against the policies."""
    out = []
    for p in policies:
        for f in found:
            out += _found_source(p, request, f) if f.role == "source" else _found_cluster(p, request, f)
            engines = p.spec.targets.engines if p.spec.targets else None
            if f.engine and engines is not None and not any_match(engines, f.engine, request.namespace):
                allowed = f"engines {_shown(engines, request.namespace)}"
                out.append(_violation(f.field, f"engine {f.engine} of {WORDS[f.kind]} {f.identifier}", p.name, allowed))
    return list(dict.fromkeys(out))


def _found_source(p: Policy, r: Request, f: Found) -> list[str]:
    out = []
    src, tg = p.spec.sources, p.spec.targets
    what = f"{WORDS[f.kind]} {f.identifier}"
    if src is not None:
        patterns = _source_patterns(src, f.kind)
        if outside(patterns, f.identifier, r.namespace):
            out.append(_violation(f.field, what, p.name, f"{WORDS[f.kind]}s {_shown(patterns or [], r.namespace)}"))
        if f.tagged:
            out += _missing_tags(f.field, what, src.required_tags or {}, f.tags, p.name)
    if tg is not None and tg.storage_encrypted and f.restored and f.encrypted is not True:
        out.append(f"{f.field}: {what} is not encrypted, and DBPolicy {p.name} requires storage encryption")
    return out


def _found_cluster(p: Policy, r: Request, f: Found) -> list[str]:
    at: PolicyAttach | None = p.spec.attach
    what = f"cluster {f.identifier}"
    if at is None or (at.clusters is None and at.cluster_tags is None):
        ours = f.tags.get(NAMESPACE_TAG) == r.namespace and f.tags.get(KIND_TAG) == "DBRestore"
        if ours:
            return []
        allowed = f"only clusters restored by a DBRestore of namespace {r.namespace} (it sets no attach.clusters)"
        return [_violation(f.field, what, p.name, allowed)]
    out = []
    if at.clusters is not None and not any_match(at.clusters, f.identifier, r.namespace):
        out.append(_violation(f.field, what, p.name, f"clusters {_shown(at.clusters, r.namespace)}"))
    out += _missing_tags(f.field, what, at.cluster_tags or {}, f.tags, p.name)
    return out


def _missing_tags(field_: str, what: str, required: dict[str, str], tags: dict[str, str], policy: str) -> list[str]:
    wrong = {k: v for k, v in sorted(required.items()) if tags.get(k) != v}
    if not wrong:
        return []
    needs = ", ".join(f"{k}={v}" for k, v in wrong.items())
    has = ", ".join(f"{k}={tags[k]}" for k in wrong if k in tags)
    return [
        f"{field_}: {what} lacks the tags {needs} that DBPolicy {policy} requires" + (f" (it has {has})" if has else "")
    ]


# --- the create calls as planned ----------------------------------------------------------------------------


def judge_calls(policies: list[Policy], request: Request, calls: list[Call]) -> list[str]:
    """The create calls themselves, with every value copied from the source filled in: the last word
    before AWS, so that no path reaches a create call that a policy forbids."""
    out = []
    creates = [c for c in calls if c.operation.startswith(("restore_", "create_"))]
    for p in policies:
        for call in creates:
            out += _call(p, request, call)
    return list(dict.fromkeys(out))


def _call(p: Policy, r: Request, call: Call) -> list[str]:
    tg = p.spec.targets
    if tg is None:
        return []
    out = []
    params: dict[str, Any] = call.params
    cls = params.get("DBInstanceClass")
    if cls and tg.instance_classes is not None and not any_match(tg.instance_classes, cls, r.namespace):
        allowed = f"instance classes {_shown(tg.instance_classes, r.namespace)}"
        out.append(_violation(r.path("instance_class"), f"{cls} (of {call.target})", p.name, allowed))
    if params.get("PubliclyAccessible") and tg.publicly_accessible is False:
        out.append(_violation(r.path("public"), f"a public {call.target}", p.name, "false only (no public databases)"))
    if tg.identifier_pattern and call.target and not matches(tg.identifier_pattern, call.target, r.namespace):
        allowed = f"identifiers matching {_shown([tg.identifier_pattern], r.namespace)}"
        out.append(_violation(r.path("identifier"), f"identifier {call.target}", p.name, allowed))
    if call.operation.startswith("restore_"):
        out += _restore_call(p.name, tg, r, params)
    tags = {t["Key"]: t["Value"] for t in params.get("Tags", [])}
    for key, value in sorted((tg.tags or {}).items()):
        if tags.get(key) != value:
            out.append(
                f"{r.path('tags')}.{key}: {call.target} would not carry {key}={value}, which DBPolicy {p.name} sets"
            )
    return out


def _restore_call(name: str, tg: PolicyTargets, r: Request, params: dict[str, Any]) -> list[str]:
    out = []
    if tg.db_subnet_group_name and params.get("DBSubnetGroupName") != tg.db_subnet_group_name:
        got = params.get("DBSubnetGroupName") or "none"
        out.append(_violation(r.path("subnet_group"), f"{got} (copied from the source)", name, tg.db_subnet_group_name))
    groups = params.get("VpcSecurityGroupIds")
    if tg.vpc_security_group_ids is not None and sorted(groups or []) != sorted(tg.vpc_security_group_ids):
        got = ", ".join(groups or []) or "none"
        out.append(
            _violation(
                r.path("security_groups"), f"{got} (copied from the source)", name, ", ".join(tg.vpc_security_group_ids)
            )
        )
    if tg.deletion_protection and not params.get("DeletionProtection"):
        out.append(_violation(r.path("deletion_protection"), "no deletion protection", name, "true only"))
    return out


# --- what the policies give ------------------------------------------------------------------------------------


def forced(policies: list[Policy]) -> Forced:
    """Forced settings, for a request that leaves them out (conflicts are refused by `judge` first)."""
    targets = [p.spec.targets for p in policies if p.spec.targets is not None]
    subnet = next((t.db_subnet_group_name for t in targets if t.db_subnet_group_name), None)
    groups = next((tuple(t.vpc_security_group_ids) for t in targets if t.vpc_security_group_ids is not None), None)
    tags: dict[str, str] = {}
    for t in reversed(targets):
        tags.update(t.tags or {})
    return Forced(subnet, groups, any(t.deletion_protection for t in targets), tags)


def limits(policies: list[Policy]) -> Limits:
    """The smallest limit of each kind, and the policy that sets it."""

    def smallest(values: list[tuple[int, str]]) -> tuple[int, str] | None:
        return min(values) if values else None

    flights = [
        (p.spec.limits.restores_in_flight, p.name)
        for p in policies
        if p.spec.limits and p.spec.limits.restores_in_flight
    ]
    owned = [
        (p.spec.limits.databases_owned, p.name) for p in policies if p.spec.limits and p.spec.limits.databases_owned
    ]
    return Limits(smallest(flights), smallest(owned))


def role(policies: list[Policy]) -> tuple[str, str | None] | None:
    """The AWS role (and ExternalId) of the namespace; None: the operator's own identity. Policies that
    disagree are a conflict `judge` reports; here the first by name is taken (never used to create)."""
    named = [p.spec.aws for p in policies if p.spec.aws is not None]
    return (named[0].role_arn, named[0].external_id) if named else None
