"""Malformed input is refused at admission, in words that name the field; well-formed input is admitted.

Everything goes through the real API server (the CRD schema and CEL rules as served). Refusals are real
applies into a namespace an operator of the test's own watches: an object that slipped through would be
stored, and that operator would call AWS. So each refusal test checks that nothing was stored and that
the operator's dbops_aws_api_calls_total stayed 0. Admissions are `--dry-run=server` (the same schema and
CEL validation; nothing is stored for an operator to act on). Identifiers and tags are generated from
RDS's documented constraints with hypothesis; each example is one kubectl call carrying one object per
field and way of breaking it, so every identifier field of both kinds meets every kind of mistake each time.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.e2e.obs_helpers import scrape, value
from tests.support.kube import Cluster
from tests.support.operator import Operator

# Each example is one kubectl call: keep them few, and never let a slow API server fail one. No shrinking:
# each step would be another call (minutes of them), and a failure already names each field and value.
# The operator and namespace fixtures are shared by a test's examples on purpose.
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
NOISE = ("should match", "some validation rules were not checked")
RESTORE = {"source": {"dbSnapshot": "orders-snap"}, "target": {"identifier": "orders-copy"}}
AURORA = {"source": {"dbClusterSnapshot": "orders-snap"}, "target": {"identifier": "orders-copy"}}
ATTACH = {"cluster": {"dbCluster": "orders"}, "identifier": "orders-reader"}


def obj(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def with_value(base: dict[str, Any], path: str, val: Any) -> dict[str, Any]:
    """A deep copy of `base` with `val` at the dotted `path` (under spec)."""
    spec = json.loads(json.dumps(base))
    *parents, leaf = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = val
    return spec


def apply_all(cluster: Cluster, docs: list[dict[str, Any]], dry_run: bool) -> dict[str, str]:
    """Apply `docs` in one kubectl call; the API server's refusal of each refused object, by name."""
    # One JSON List: kubectl decodes it as JSON (YAML would refuse keys over 1024 characters, escapes counted).
    stream = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    args = ["apply", "-f", "-", *(["--dry-run=server"] if dry_run else [])]
    proc = cluster.kubectl(*args, input=stream, check=False)
    refused = {}
    for chunk in proc.stderr.split("Error from server")[1:]:
        found = re.search(r'\.dbops\.dev "([^"]+)" is invalid: ', chunk)
        assert found, chunk
        refused[found.group(1)] = chunk
    assert (proc.returncode != 0) == bool(refused), proc.stderr
    return refused


def names_the_field(text: str, field: str) -> bool:
    """The API server's path is the field (or an item of it), and so is the message's first words."""
    return re.search(rf"{re.escape(field)}(\[\d+\])?: [^\n]*: (each of )?{re.escape(field)} ", text) is not None


@dataclass(frozen=True)
class Refusal:
    """An object that admission must refuse, naming `field`; `shown` is the bad input, for the report."""

    kind: str
    field: str
    spec: dict[str, Any]
    shown: Any


def check_refusals(refused: dict[str, str], expected: dict[str, Refusal]) -> list[str]:
    """What is wrong with the refusals of the objects named in `expected`."""
    wrong = []
    for name, case in expected.items():
        text = refused.get(name)
        if text is None:
            wrong.append(f"admitted, but {case.field} is malformed: {case.shown!r}")
        elif not names_the_field(text, case.field) or any(n in text for n in NOISE):
            wrong.append(f"the refusal of {case.shown!r} does not name {case.field} in words alone:\n{text}")
    return wrong


def assert_refused(cluster: Cluster, operator: Operator, namespace: str, cases: list[Refusal]) -> None:
    """Real applies, the operator watching: each case refused in words naming its field, nothing stored,
    no AWS call."""
    if operator.proc is None:  # one operator for all of a test's examples
        # No orphan sweep during the test (it looks at AWS every resync): every AWS call counted below
        # would be one an admitted object caused.
        operator.start(DBOPS_RESYNC_INTERVAL="3600")
    batch = uuid.uuid4().hex[:6]  # an object wrongly admitted must not meet the next example as an update
    named = {f"r{batch}-{n}": case for n, case in enumerate(cases)}
    refused = apply_all(cluster, [obj(c.kind, name, namespace, c.spec) for name, c in named.items()], dry_run=False)
    wrong = check_refusals(refused, named)
    assert not wrong, "\n".join(wrong)
    stored = cluster.kubectl("get", "dbrestores,dbattaches", "-n", namespace, "-o", "name").stdout.split()
    assert stored == [], f"admitted: {stored}"
    assert value(scrape(operator.metrics_port), "dbops_aws_api_calls_total") == 0


def assert_admitted(cluster: Cluster, namespace: str, specs: list[tuple[str, dict[str, Any]]]) -> None:
    """(kind, spec) pairs, all admitted (a server dry run: the same validation, nothing stored)."""
    docs = [obj(kind, f"ok-{n}", namespace, spec) for n, (kind, spec) in enumerate(specs)]
    assert apply_all(cluster, docs, dry_run=True) == {}


@dataclass(frozen=True)
class Place:
    """Where an identifier goes: a field of one kind, on a spec that is valid otherwise."""

    kind: str
    path: str  # under spec
    base: dict[str, Any]
    max_length: int = 63
    # An identifier's rules: a letter first, no hyphen at the end nor two in a row. Subnet group names
    # have none of them (RDS allows digits, spaces, periods and underscores anywhere).
    identifier_rules: bool = True

    @property
    def field(self) -> str:
        return f"spec.{self.path}"

    def spec(self, ident: str) -> dict[str, Any]:
        if self.path.startswith("source."):  # the source is this one
            return with_value({**self.base, "source": {}}, self.path, ident)
        return with_value(self.base, self.path, ident)


PLACES = [
    Place("DBRestore", "target.identifier", RESTORE),
    Place("DBRestore", "source.latestSnapshot.dbInstance", RESTORE),
    Place("DBRestore", "source.latestSnapshot.dbCluster", AURORA),
    Place("DBRestore", "source.pointInTime.dbInstance", RESTORE),
    Place("DBRestore", "source.pointInTime.dbCluster", AURORA),
    Place("DBRestore", "source.dbSnapshot", RESTORE, 255),
    Place("DBRestore", "source.dbClusterSnapshot", AURORA, 255),
    Place("DBRestore", "target.dbSubnetGroupName", RESTORE, 255, identifier_rules=False),
    Place("DBRestore", "target.dbParameterGroupName", RESTORE, 255),
    Place("DBRestore", "target.dbClusterParameterGroupName", AURORA, 255),
    Place("DBRestore", "target.optionGroupName", RESTORE, 255),
    Place("DBAttach", "identifier", ATTACH),
    Place("DBAttach", "identifierPrefix", {"cluster": {"dbCluster": "orders"}}, 60),
    Place("DBAttach", "cluster.dbCluster", ATTACH),
    Place("DBAttach", "dbParameterGroupName", ATTACH, 255),
]


def identifiers(max_length: int = 63) -> st.SearchStrategy[str]:
    """Well-formed RDS identifiers: a letter, then letters or digits, each perhaps after one hyphen."""
    tail = st.lists(st.tuples(st.sampled_from(["", "-"]), st.sampled_from(string.ascii_lowercase + string.digits)))
    ident = st.builds(
        lambda first, rest: first + "".join(h + c for h, c in rest), st.sampled_from(string.ascii_lowercase), tail
    )
    return ident.filter(lambda s: len(s) <= max_length)


@st.composite
def upper_cased(draw: st.DrawFn) -> str:
    """A well-formed identifier with at least one letter in upper case (RDS would store it lower-cased)."""
    ident = draw(identifiers(40))
    letters = [i for i, c in enumerate(ident) if c.isalpha()]
    chosen = draw(st.sets(st.sampled_from(letters), min_size=1))
    return "".join(c.upper() if i in chosen else c for i, c in enumerate(ident))


BAD_CHARS = "!#$%&*()+=/\\,;'\"`~?<>[]{}|é@"


def malformed(place: Place) -> list[st.SearchStrategy[str]]:
    """One strategy for each way of breaking RDS's documented constraints on the identifiers of `place`."""
    too_long = st.tuples(identifiers(40), st.integers(1, 30))
    ways = [
        upper_cased(),
        st.tuples(identifiers(30), st.sampled_from(BAD_CHARS), identifiers(30)).map("".join),
        too_long.map(lambda t: (t[0] + "a" * place.max_length)[: place.max_length + t[1]]),
        st.just(""),
    ]
    if place.identifier_rules:
        ways += [
            st.tuples(st.sampled_from(string.digits + "-"), identifiers(40)).map("".join),  # no letter first
            identifiers(30).map(lambda s: s + "-"),
            st.tuples(identifiers(30), identifiers(30)).map(lambda p: f"{p[0]}--{p[1]}"),
        ]
    return ways


@st.composite
def malformed_everywhere(draw: st.DrawFn) -> list[tuple[Place, str]]:
    """Every way of breaking every identifier field, once each (one object each, all in one call)."""
    return [(place, draw(way)) for place in PLACES for way in malformed(place)]


@EXAMPLES
@given(cases=malformed_everywhere())
def test_malformed_identifiers_are_refused_in_every_field(
    cluster: Cluster, own_operator: Operator, own_namespace: str, cases: list[tuple[Place, str]]
) -> None:
    assert_refused(cluster, own_operator, own_namespace, [Refusal(p.kind, p.field, p.spec(i), i) for p, i in cases])


@EXAMPLES
@given(idents=st.lists(identifiers(), min_size=len(PLACES), max_size=len(PLACES)))
def test_well_formed_identifiers_are_admitted_in_every_field(
    cluster: Cluster, own_namespace: str, idents: list[str]
) -> None:
    assert_admitted(
        cluster, own_namespace, [(p.kind, p.spec(i[: p.max_length])) for p, i in zip(PLACES, idents, strict=True)]
    )


# Tags, as RDS documents them: keys 1-128 and values 0-256 Unicode letters, digits, spaces and _.:/=+-@;
# aws: and rds: keys are AWS's, dbops.dev/ keys dbops'. Letters and digits from the Basic Multilingual
# Plane's older blocks, whose categories Python and Go's Unicode tables agree on.
TAG_ALPHABET = st.characters(categories=["L", "N", "Zs"], max_codepoint=0x9FFF, include_characters="_.:/=+-@")
RESERVED = ("aws:", "rds:", "dbops.dev/")


def reserved(key: str) -> bool:
    return key.lower().startswith(RESERVED)


tag_keys = st.text(TAG_ALPHABET, min_size=1, max_size=128).filter(lambda k: not reserved(k))
tag_values = st.text(TAG_ALPHABET, max_size=256)


@st.composite
def random_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


def bad_tags(key: str, val: str) -> list[st.SearchStrategy[tuple[str, str]]]:
    """One strategy for each way a tag (key, value) breaks the rules of RDS or dbops, from a good one."""
    bad_char = st.sampled_from("!#$%&*()?<>[]{}|\\,;\"'`~\t")
    return [
        st.just(("", val)),
        st.text(TAG_ALPHABET, min_size=129, max_size=200).map(lambda k: (k, val)),
        st.text(TAG_ALPHABET, min_size=257, max_size=300).map(lambda v: (key, v)),
        st.sampled_from(RESERVED).flatmap(random_case).map(lambda p: ((p + key)[:128], val)),
        bad_char.map(lambda c: (key[:64] + c + key[64:127], val)),
        bad_char.map(lambda c: (key, val[:100] + c)),
    ]


@st.composite
def malformed_tags(draw: st.DrawFn) -> list[tuple[str, str]]:
    key, val = draw(tag_keys), draw(tag_values)
    return [draw(way) for way in bad_tags(key, val)]


TAG_PLACES = [Place("DBRestore", "target.tags", RESTORE), Place("DBAttach", "tags", ATTACH)]


@EXAMPLES
@given(bad=malformed_tags(), good=st.dictionaries(tag_keys, tag_values, max_size=5))
def test_malformed_tags_are_refused(
    cluster: Cluster, own_operator: Operator, own_namespace: str, bad: list[tuple[str, str]], good: dict[str, str]
) -> None:
    cases = [
        Refusal(p.kind, p.field, with_value(p.base, p.path, {**good, key: val}), (key, val))
        for p in TAG_PLACES
        for key, val in bad
    ]
    assert_refused(cluster, own_operator, own_namespace, cases)


@EXAMPLES
@given(tags=st.lists(st.dictionaries(tag_keys, tag_values, max_size=40), min_size=2, max_size=2))
def test_well_formed_tags_are_admitted(cluster: Cluster, own_namespace: str, tags: list[dict[str, str]]) -> None:
    assert_admitted(
        cluster, own_namespace, [(p.kind, with_value(p.base, p.path, t)) for p, t in zip(TAG_PLACES, tags, strict=True)]
    )


ARN = "arn:aws:rds:eu-west-1:123456789012"
INSTANCE_HOST = "orders.abc123xyz.eu-west-1.rds.amazonaws.com"
CLUSTER_HOST = "orders.cluster-abc123xyz.eu-west-1.rds.amazonaws.com"
LONG = "x" * 129


def src(**source: Any) -> dict[str, Any]:
    return {"source": source}


def tgt(**target: Any) -> dict[str, Any]:
    return {"target": {"identifier": "orders-copy", **target}}


def pw(**ref: Any) -> dict[str, Any]:
    return {"masterPassword": {"secretRef": ref}}


def ttl(text: str, policy: str = "Delete") -> dict[str, Any]:
    return {"ttl": text, "deletionPolicy": policy}


# (id, kind, spec on top of the kind's valid base, the field the refusal must name). The generated
# identifier and tag tests above cover those fields in depth; these are one of each other rule.
MALFORMED: list[tuple[str, str, dict[str, Any], str]] = [
    ("arn-upper-name", "DBRestore", src(dbSnapshot=f"{ARN}:snapshot:Orders-Nightly"), "spec.source.dbSnapshot"),
    ("arn-bad-account", "DBRestore", src(dbSnapshot="arn:aws:rds:eu-west-1:1234:snapshot:s"), "spec.source.dbSnapshot"),
    ("cluster-arn-as-db-snapshot", "DBRestore", src(dbSnapshot=f"{ARN}:cluster-snapshot:s"), "spec.source.dbSnapshot"),
    (
        "db-arn-as-cluster-snapshot",
        "DBRestore",
        src(dbClusterSnapshot=f"{ARN}:snapshot:s"),
        "spec.source.dbClusterSnapshot",
    ),
    (
        "arn-other-region",
        "DBRestore",
        {**src(dbSnapshot=f"{ARN}:snapshot:s"), "region": "us-east-1"},
        "spec.source.dbSnapshot",
    ),
    (
        "cluster-arn-other-region",
        "DBRestore",
        {**src(dbClusterSnapshot=f"{ARN}:cluster-snapshot:s"), **tgt(), "region": "us-east-1"},
        "spec.source.dbClusterSnapshot",
    ),
    (
        "endpoint-other-region",
        "DBRestore",
        {**src(latestSnapshot={"endpoint": INSTANCE_HOST}), "region": "us-east-1"},
        "spec.source.latestSnapshot.endpoint",
    ),
    (
        "endpoint-upper",
        "DBRestore",
        src(pointInTime={"endpoint": INSTANCE_HOST.upper()}),
        "spec.source.pointInTime.endpoint",
    ),
    ("instances-on-instance", "DBRestore", tgt(instances={"count": 2}), "spec.target.instances"),
    (
        "cluster-params-on-instance",
        "DBRestore",
        {**src(latestSnapshot={"dbInstance": "orders"}), **tgt(dbClusterParameterGroupName="p")},
        "spec.target.dbClusterParameterGroupName",
    ),
    (
        "aurora-storage-on-instance",
        "DBRestore",
        {**src(pointInTime={"endpoint": INSTANCE_HOST}), **tgt(storageType="aurora-iopt1")},
        "spec.target.storageType",
    ),
    ("multi-az-on-aurora", "DBRestore", {**src(dbClusterSnapshot="s"), **tgt(multiAZ=False)}, "spec.target.multiAZ"),
    (
        "class-on-aurora",
        "DBRestore",
        {**src(latestSnapshot={"dbCluster": "orders"}), **tgt(dbInstanceClass="db.r6g.large")},
        "spec.target.dbInstanceClass",
    ),
    (
        "option-group-on-aurora",
        "DBRestore",
        {
            **src(latestSnapshot={"endpoint": CLUSTER_HOST.replace("cluster-", "cluster-ro-")}),
            **tgt(optionGroupName="o"),
        },
        "spec.target.optionGroupName",
    ),
    (
        "gp3-on-aurora",
        "DBRestore",
        {
            **src(pointInTime={"endpoint": CLUSTER_HOST.replace("cluster-", "cluster-custom-")}),
            **tgt(storageType="gp3"),
        },
        "spec.target.storageType",
    ),
    ("ttl-zero", "DBRestore", ttl("0s"), "spec.ttl"),
    ("ttl-seconds", "DBRestore", ttl("4s"), "spec.ttl"),
    ("ttl-just-short", "DBRestore", ttl("9m59s"), "spec.ttl"),
    ("ttl-zero-days", "DBRestore", ttl("0d"), "spec.ttl"),
    ("ttl-words", "DBRestore", ttl("tomorrow"), "spec.ttl"),
    ("ttl-empty", "DBRestore", ttl(""), "spec.ttl"),
    ("ttl-smallest-unit-first", "DBRestore", ttl("30m2h"), "spec.ttl"),
    ("ttl-fraction", "DBRestore", ttl("1.5h"), "spec.ttl"),
    ("ttl-over-ten-years", "DBRestore", ttl("3651d"), "spec.ttl"),
    ("ttl-absurd", "DBRestore", ttl("99999999999999999999d"), "spec.ttl"),
    ("ttl-with-retain", "DBRestore", ttl("24h", "Retain"), "spec.ttl"),
    ("secret-name-empty", "DBRestore", pw(name=""), "spec.masterPassword.secretRef.name"),
    ("secret-name-upper", "DBRestore", pw(name="Orders-PW"), "spec.masterPassword.secretRef.name"),
    ("secret-name-underscore", "DBRestore", pw(name="orders_pw"), "spec.masterPassword.secretRef.name"),
    ("secret-name-dot-end", "DBRestore", pw(name="orders."), "spec.masterPassword.secretRef.name"),
    ("secret-key-space", "DBRestore", pw(name="pw", key="pass word"), "spec.masterPassword.secretRef.key"),
    ("secret-key-dotdot", "DBRestore", pw(name="pw", key="..data"), "spec.masterPassword.secretRef.key"),
    ("secret-key-empty", "DBRestore", pw(name="pw", key=""), "spec.masterPassword.secretRef.key"),
    ("region-upper", "DBRestore", {"region": "EU-WEST-1"}, "spec.region"),
    ("region-zone", "DBRestore", {"region": "eu-west-1a"}, "spec.region"),
    ("policy", "DBRestore", {"deletionPolicy": "Destroy"}, "spec.deletionPolicy"),
    ("storage-type", "DBRestore", tgt(storageType="gp4"), "spec.target.storageType"),
    (
        "snapshot-type",
        "DBRestore",
        src(latestSnapshot={"dbInstance": "o", "snapshotType": "weekly"}),
        "spec.source.latestSnapshot.snapshotType",
    ),
    ("class-upper", "DBRestore", tgt(dbInstanceClass="db.R6G.large"), "spec.target.dbInstanceClass"),
    ("security-group", "DBRestore", tgt(vpcSecurityGroupIds=["sg-123"]), "spec.target.vpcSecurityGroupIds"),
    (
        "security-groups",
        "DBRestore",
        tgt(vpcSecurityGroupIds=[f"sg-{n:08x}" for n in range(21)]),
        "spec.target.vpcSecurityGroupIds",
    ),
    ("tags-too-many", "DBRestore", tgt(tags={f"k{n}": "v" for n in range(41)}), "spec.target.tags"),
    ("tag-key-long", "DBRestore", tgt(tags={LONG: "v"}), "spec.target.tags"),
    ("tag-owner", "DBRestore", tgt(tags={"dbops.dev/owner-uid": "someone-else"}), "spec.target.tags"),
    ("tag-aws", "DBAttach", {"tags": {"AWS:CloudFormation:stack-name": "x"}}, "spec.tags"),
    ("attach-zone", "DBAttach", {"availabilityZones": ["eu-west-1"]}, "spec.availabilityZones"),
    ("attach-zones", "DBAttach", {"availabilityZones": ["eu-west-1a"] * 17}, "spec.availabilityZones"),
    ("attach-ref", "DBAttach", {"cluster": {"dbRestoreRef": "Billing_Aurora"}}, "spec.cluster.dbRestoreRef"),
    (
        "attach-endpoint-region",
        "DBAttach",
        {"cluster": {"endpoint": CLUSTER_HOST}, "region": "us-east-1"},
        "spec.cluster.endpoint",
    ),
    ("attach-policy", "DBAttach", {"deletionPolicy": "Snapshot"}, "spec.deletionPolicy"),
    ("attach-interval", "DBAttach", {"monitoring": {"interval": 7}}, "spec.monitoring.interval"),
    (
        "attach-role",
        "DBAttach",
        {"monitoring": {"interval": 60, "roleArn": "arn:aws:iam::123:role/x"}},
        "spec.monitoring.roleArn",
    ),
]
BASES = {"DBRestore": RESTORE, "DBAttach": ATTACH}


def merged(base: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` over `base`, one level deep (target settings keep the base's identifier; None removes)."""
    out = json.loads(json.dumps(base))
    for key, val in spec.items():
        out[key] = {**out[key], **val} if key == "target" else val
    return {k: v for k, v in out.items() if v is not None}


def test_each_rule_refuses_in_words_naming_the_field_before_any_aws_call(
    cluster: Cluster, own_operator: Operator, own_namespace: str
) -> None:
    cases = [
        Refusal(kind, field, merged(BASES[kind], spec), f"{case}: {spec}") for case, kind, spec, field in MALFORMED
    ]
    assert_refused(cluster, own_operator, own_namespace, cases)


# Inputs at the edges of the rules that RDS takes, and that must stay admitted.
WELL_FORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("longest-identifier", "DBRestore", {"target": {"identifier": "a" + "-b" * 31}}),
    ("shortest-identifier", "DBRestore", {"target": {"identifier": "a"}}),
    ("automated-snapshot", "DBRestore", src(dbSnapshot="rds:orders-2026-11-20-03-05")),
    ("snapshot-arn", "DBRestore", {**src(dbSnapshot=f"{ARN}:snapshot:orders"), "region": "eu-west-1"}),
    (
        "gov-cluster-arn",
        "DBRestore",
        src(dbClusterSnapshot="arn:aws-us-gov:rds:us-gov-west-1:123456789012:cluster-snapshot:rds:x-1"),
    ),
    (
        "china-endpoint",
        "DBRestore",
        src(latestSnapshot={"endpoint": "o.cluster-ro-abc.cn-north-1.rds.amazonaws.com.cn"}),
    ),
    ("endpoint-same-region", "DBRestore", {**src(pointInTime={"endpoint": INSTANCE_HOST}), "region": "eu-west-1"}),
    (
        "aurora-settings",
        "DBRestore",
        {
            **src(dbClusterSnapshot="s"),
            **tgt(
                instances={"count": 2, "dbInstanceClass": "db.serverless"},
                storageType="aurora-iopt1",
                dbClusterParameterGroupName="default.aurora-postgresql16",
                dbParameterGroupName="default.aurora-postgresql16",  # for the cluster's instances
            ),
        },
    ),
    (
        "instance-settings",
        "DBRestore",
        tgt(
            multiAZ=True,
            storageType="gp3",
            dbInstanceClass="db.r5.4xlarge.tpc2.mem2x",
            optionGroupName="default:mysql-8-0",
            dbSubnetGroupName="default",
            vpcSecurityGroupIds=["sg-0123abcd", "sg-0123456789abcdef0"],
        ),
    ),
    ("ttl-shortest", "DBRestore", ttl("10m")),
    ("ttl-mixed", "DBRestore", ttl("1d12h30m15s")),
    ("ttl-in-seconds", "DBRestore", ttl("600s")),
    ("ttl-longest", "DBRestore", ttl("3650d", "Snapshot")),
    ("secret", "DBRestore", pw(name="orders.preview-pw", key=".hidden_key-1")),
    (
        "tags-edges",
        "DBRestore",
        tgt(tags={"k" * 128: "v" * 256, "empty": "", "Team Name": "Données ümlaut 日本", "a:b/c=d+e-f@g_h.": "1"}),
    ),
    ("attach-local-zone", "DBAttach", {"availabilityZones": ["us-west-2-lax-1a", "eu-west-1c"]}),
    (
        "attach-everything",
        "DBAttach",
        {
            "identifier": None,
            "identifierPrefix": "o" * 60,
            "count": 15,
            "cluster": {"dbRestoreRef": "billing.aurora-1"},
            "monitoring": {"interval": 60, "roleArn": "arn:aws:iam::123456789012:role/path/rds-monitoring"},
            "region": "eu-west-1",
        },
    ),
]


def test_input_at_the_edges_of_the_rules_is_admitted(cluster: Cluster, own_namespace: str) -> None:
    assert_admitted(cluster, own_namespace, [(kind, merged(BASES[kind], spec)) for _, kind, spec in WELL_FORMED])
