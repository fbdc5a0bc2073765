"""manifests/monitoring: the Grafana dashboard and the PrometheusRule against what the operator exports.

The exported names come from the real prometheus-client registry after `dbops.metrics` is installed, never
from a list kept here; the alerts run under `promtool test rules` (tests/unit/monitoring-rules.test.yaml
makes each fire and not fire). promtool is built from the Go module proxy by hack/promtool.sh (`make setup`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from dbops import metrics
from tests.support.kube import ROOT

MONITORING = ROOT / "manifests" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "dbops-overview.json"
RULE = MONITORING / "prometheusrule.yaml"
RULES_TEST = pathlib.Path(__file__).with_name("monitoring-rules.test.yaml")
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Series Prometheus makes itself for every target (not exported by the operator).
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# The labels dbops may use: a handful of values each (never a namespace, name or UID).
LOW_CARDINALITY_LABELS = frozenset(
    {"kind", "outcome", "reason", "operation", "code", "handler", "channel", "action", "version", "python_version"}
)

# --- the names the operator exports ---------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


@pytest.fixture(scope="module")
def operator_metrics() -> metrics.Metrics:
    """The operator's metrics, in a registry of their own (the operator uses the default one), with
    every collector the operator registers at startup (dbops.app.build)."""
    from dbops.core.aws import Aws, AwsConfig
    from dbops.core.report import Reporter

    m = metrics.Metrics(CollectorRegistry())
    metrics.subscribe(m, Reporter(None), Aws(AwsConfig()))
    metrics.count_orphans(m, dict)
    return m


@pytest.fixture(scope="module")
def families(operator_metrics: metrics.Metrics) -> list[Any]:
    return list(operator_metrics.registry.collect())


@pytest.fixture(scope="module")
def exported(families: list[Any]) -> set[str]:
    """Every series name the operator's /metrics can carry (histogram and counter suffixes included)."""
    names = set()
    for family in families:
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


# --- metric names in PromQL -----------------------------------------------------------------------

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
    | {"inf", "nan"}
)
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (with Grafana variables) selects: identifiers that are not
    functions, keywords, label names in groupings or matchers, strings, durations or variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\$\{[^}]*\}|\$[a-zA-Z_]\w*", " ", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = GROUPING.sub(" ", text)
    text = re.sub(r"(?<![\w.])\d[\w.]*", " ", text)  # numbers and durations (1e3, 5m, 0.95)
    names = set()
    for match in IDENTIFIER.finditer(text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group())
    # `{__name__="x"}` selects x too.
    names.update(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    return names


def test_metric_names_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(dbops_restore_duration_seconds_bucket{outcome="available",'
        'kind=~"DB.*"}[$__rate_interval])))\n/ on (kind) group_left () sum without (instance) '
        '(increase(dbops_restores_total[1h] offset 5m)) or vector(0) > bool 1e3 and {__name__="up", job="x"}'
    )
    assert metric_names(expr) == {"dbops_restore_duration_seconds_bucket", "dbops_restores_total", "up"}
    assert metric_names("sum(rate(dbops_no_such_metric_total[5m]))") == {"dbops_no_such_metric_total"}


def dashboard_exprs(node: Any) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard, rows' panels and variables included."""
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield str(node.get("refId", "")), node["expr"]
        if isinstance(node.get("query"), str) and node.get("type") == "query":
            yield node.get("name", "variable"), node["query"]
        for key, value in node.items():
            for where, expr in dashboard_exprs(value):
                yield (f"{node['title']}/{where}" if key == "targets" and "title" in node else where), expr
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULE.read_text())
    assert doc["kind"] == "PrometheusRule"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


# --- the dashboard ----------------------------------------------------------------------------------


def test_every_dashboard_query_names_only_exported_metrics(exported: set[str]) -> None:
    # The exported names are series names: suffixed, and nothing else (a counter's bare name is no series).
    assert {"dbops_restores_total", "dbops_restore_duration_seconds_bucket", "dbops_build_info"} <= exported
    assert not {"dbops_restores", "dbops_restore_duration_seconds", "dbops_build"} & exported
    exprs = list(dashboard_exprs(dashboard()))
    assert len(exprs) >= 20, exprs
    unknown = {f"{where}: {name}" for where, expr in exprs for name in metric_names(expr) - exported - SYNTHETIC}
    assert not unknown, f"dashboard queries name metrics dbops does not export: {sorted(unknown)}"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = [expr for _, expr in dashboard_exprs(dashboard())]
    used = set().union(*(metric_names(e) for e in exprs))
    for name in (
        "dbops_restores_in_flight",  # restores in flight
        "dbops_restores_total",  # success rate, failures by reason
        "dbops_restore_duration_seconds_bucket",  # duration percentiles
        "dbops_aws_api_errors_total",
        "dbops_aws_api_throttled_total",
        "dbops_audit_spool_records",
        "dbops_restore_oldest_in_flight_seconds",
        "dbops_build_info",
    ):
        assert name in used, f"the dashboard has no panel on {name}"
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any("by (kind, reason)" in e and 'outcome="failed"' in e for e in exprs)
    assert any('kind="DBAttach"' in e for e in exprs)  # attaches have panels of their own
    board = dashboard()
    assert board["uid"] and board["title"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_queries_parse_as_promql(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Every query through Prometheus' own parser (as recording rules), Grafana's variables filled in."""
    variables = {"$__rate_interval": "5m", "$__range": "1d", "$__interval": "1m"}
    recorded = []
    for i, (_, query) in enumerate(dashboard_exprs(dashboard())):
        expr = query
        for var, value in variables.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {query!r}"
        recorded.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    proc = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the alerts -------------------------------------------------------------------------------------

ALERTS = {"DbopsRestoreFailed", "DbopsRestoreStuck", "DbopsAWSThrottlingSustained", "DbopsAuditSpoolGrowing"}


def test_alerts_cover_the_issue_and_name_only_exported_metrics(exported: set[str]) -> None:
    alerts = {r["alert"]: r for r in rules()}
    assert ALERTS | {"DbopsOperatorDown"} <= set(alerts)
    for name, rule in alerts.items():
        unknown = metric_names(rule["expr"]) - exported - SYNTHETIC
        assert not unknown, f"{name} names metrics dbops does not export: {unknown}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert {"up", "dbops_build_info"} <= metric_names(alerts["DbopsOperatorDown"]["expr"])


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_section() -> None:
    text = RUNBOOKS.read_text()
    found = re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    sections = {github_anchor(m.group(1)): m.group(2) for m in found}
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/runbooks.md"), url
        assert anchor in sections, f"{rule['alert']}: no section #{anchor} in docs/runbooks.md"
        body = sections[anchor]
        for part in ("**What it means.**", "**How to check.**", "**How to fix.**"):
            assert part in body, f"runbook section {anchor} lacks {part}"


@pytest.fixture(scope="module")
def promtool() -> pathlib.Path:
    """hack/promtool.sh's cached binary (or DBOPS_PROMTOOL); missing is a failure, never a skip."""
    if os.environ.get("DBOPS_PROMTOOL"):
        path = pathlib.Path(os.environ["DBOPS_PROMTOOL"])
    else:
        version = re.search(r"PROM_MODULE_VERSION:-(v[\d.]+)", (ROOT / "hack" / "promtool.sh").read_text())
        assert version, "hack/promtool.sh names no PROM_MODULE_VERSION"
        cache = os.environ.get("DBOPS_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dbops"
        )
        path = pathlib.Path(cache) / "tools" / f"promtool-{version.group(1)}" / "promtool"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"promtool not found at {path}: build it with `make setup` or `hack/promtool.sh` "
            "(Prometheus' promtool from the Go module proxy, a few minutes the first time)"
        )
    return path


def test_promtool_test_rules(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Each alert fires on input series that should fire it, and stays quiet on those that should not."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == ["rules.yaml"]
    cases = [case for group in tests["tests"] for case in group["alert_rule_test"]]
    for alert in {r["alert"] for r in rules()}:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in mine), f"no promtool case where {alert} fires"
        assert any(not c.get("exp_alerts") for c in mine), f"no promtool case where {alert} stays quiet"

    check = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(
        [str(promtool), "test", "rules", RULES_TEST.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_promtool_test_rules_has_teeth(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The same tests fail against a rule that never fires: promtool's verdict is not a formality."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "DbopsRestoreFailed":
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    proc = subprocess.run(
        [str(promtool), "test", "rules", RULES_TEST.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0 and "DbopsRestoreFailed" in proc.stdout + proc.stderr, proc.stdout


# --- the metrics themselves ---------------------------------------------------------------------------


def test_metric_naming_conventions(families: list[Any], operator_metrics: metrics.Metrics) -> None:
    mine = [f for f in families if f.name.startswith("dbops_")]
    by_name = {f.name: f for f in mine}
    assert "dbops_build" in by_name and by_name["dbops_build"].type == "info"  # dbops_build_info
    build = [s for s in by_name["dbops_build"].samples if s.name == "dbops_build_info"]
    assert build and build[0].value == 1 and {"version", "python_version"} <= set(build[0].labels)
    for family in mine:
        assert re.fullmatch(r"dbops_[a-z][a-z0-9]*(_[a-z0-9]+)*", family.name), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: a duration histogram in seconds"
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            extra = set(sample.labels) - LOW_CARDINALITY_LABELS - {"le"}
            assert not extra, f"{sample.name}: labels {extra} are not known low-cardinality ones"
    # Every counter the operator defines, not only those with samples yet, ends in _total.
    for counter in (m for m in vars(operator_metrics).values() if type(m).__name__ == "Counter"):
        assert counter._name.startswith("dbops_")  # prometheus-client adds _total to the samples
        assert set(counter._labelnames) <= LOW_CARDINALITY_LABELS, counter._name


def test_in_flight_age_and_attach_starts() -> None:
    """What the stuck alert and the attach panels read: a restore or attach starts with "requested", is
    counted once however many steps it takes, and its age is exported while in flight."""
    from datetime import timedelta

    from dbops.core import report
    from dbops.core.status import now

    m = metrics.Metrics(CollectorRegistry())

    def post(kind: str, uid: str, action: str, minutes_ago: float = 0, **details: Any) -> None:
        when = now() - timedelta(minutes=minutes_ago)
        m.observe_record(report.Record(kind, "ns", uid, uid, action, "Reason", "msg", time=when, details=details))

    def sample(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert sample("dbops_restore_oldest_in_flight_seconds", kind="DBRestore") == 0
    post("DBAttach", "a1", "requested", minutes_ago=30)
    post("DBAttach", "a1", "aws-call", minutes_ago=30)
    post("DBAttach", "a1", "attaching", minutes_ago=20)
    post("DBRestore", "r1", "requested", minutes_ago=5)
    post("DBRestore", "r1", "aws-call", minutes_ago=5)
    assert sample("dbops_restores_started_total", kind="DBAttach") == 1
    assert sample("dbops_restores_started_total", kind="DBRestore") == 1
    assert sample("dbops_restores_in_flight", kind="DBAttach") == 1
    assert 29 * 60 < (sample("dbops_restore_oldest_in_flight_seconds", kind="DBAttach") or 0) < 31 * 60
    assert 4 * 60 < (sample("dbops_restore_oldest_in_flight_seconds", kind="DBRestore") or 0) < 6 * 60

    post("DBAttach", "a1", "available")  # no duration in the record: measured from its first step
    post("DBRestore", "r1", "failed", duration_seconds=42.0)
    assert sample("dbops_restores_in_flight", kind="DBAttach") == 0
    assert sample("dbops_restore_oldest_in_flight_seconds", kind="DBAttach") == 0
    assert 29 * 60 < (sample("dbops_restore_duration_seconds_sum", kind="DBAttach", outcome="available") or 0) < 31 * 60
    assert sample("dbops_restore_duration_seconds_sum", kind="DBRestore", outcome="failed") == 42.0
    assert sample("dbops_restores_total", kind="DBRestore", outcome="failed", reason="Reason") == 1
    post("DBRestore", "r1", "requested")  # a retry is a new start
    assert sample("dbops_restores_started_total", kind="DBRestore") == 2
