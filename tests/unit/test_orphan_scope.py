"""Where the orphan sweep lists objects: in the watched namespaces when they are named exactly (what a
namespace-scoped install's Role allows), cluster-wide otherwise."""

from __future__ import annotations

from typing import Any

from dbops.orphans import Sweep, exact_namespaces


def test_exact_names_are_listed_namespace_by_namespace() -> None:
    assert exact_namespaces("team-a") == ["team-a"]
    assert exact_namespaces(" team-a , team-b ") == ["team-a", "team-b"]


def test_patterns_and_everything_are_listed_cluster_wide() -> None:
    for patterns in ("", "team-*", "team-a,t-?", "!kube-system", "team-a,!team-b", "team-[ab]"):
        assert exact_namespaces(patterns) is None, patterns


class _Kube:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        self.asked.append((plural, namespace))
        return []


class _Aws:
    def paginate(self, *_: Any) -> list[dict[str, Any]]:
        return []


def _sweep(kube: _Kube, namespaces: list[str] | None) -> Sweep:
    return Sweep(_Aws(), kube, None, regions=lambda: {"us-east-1"}, watched=lambda _: True, namespaces=namespaces)  # type: ignore[arg-type]


def test_the_sweep_lists_where_it_is_told() -> None:
    scoped, everywhere = _Kube(), _Kube()
    _sweep(scoped, ["team-a", "team-b"]).once()
    _sweep(everywhere, None).once()
    assert sorted(scoped.asked) == sorted((p, ns) for p in ("dbrestores", "dbattaches") for ns in ("team-a", "team-b"))
    assert sorted(everywhere.asked) == [("dbattaches", None), ("dbrestores", None)]
