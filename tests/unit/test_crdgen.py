"""The CRDs in crds/ are exactly what the pydantic models render: the two cannot drift."""

from __future__ import annotations

import pathlib

import yaml

from dbops import crdgen
from dbops.models import RESOURCES, DBRestoreSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    rendered = crdgen.files()
    committed = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert committed.keys() == rendered.keys()
    for name, text in rendered.items():
        assert committed[name] == text, f"crds/{name} drifted from the models: run `make crds`"


def _walk(schema: dict, path: str = "") -> list[str]:
    problems = []
    for key in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
        if key in schema:
            problems.append(f"{path or '/'} has {key}")
    if "type" not in schema and "x-kubernetes-preserve-unknown-fields" not in schema:
        problems.append(f"{path or '/'} has no type")
    for name, sub in schema.get("properties", {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if "items" in schema:
        problems += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _walk(schema["additionalProperties"], f"{path}{{}}")
    return problems


def test_schemas_are_structural() -> None:
    for text in crdgen.files().values():
        crd = yaml.safe_load(text)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema) == []


def test_every_spec_field_of_the_model_is_in_the_crd() -> None:
    crd = yaml.safe_load(crdgen.files()["dbops.dev_dbrestores.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for name, field in DBRestoreSpec.model_fields.items():
        assert (field.alias or name) in spec
    assert set(spec["target"]["properties"]) >= {"identifier", "dbInstanceClass", "multiAZ", "tags", "instances"}


def _nodes(schema: dict, path: str):
    """(path, node) of `schema` and everything below it."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[]")


def _schemas() -> list[dict]:
    return [crdgen.crd(res)["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for res in RESOURCES]


def test_what_a_user_can_get_wrong_is_a_cel_rule_in_words_naming_the_field() -> None:
    """No pattern (the API server prints it as a regex) and no enum (it would skip every CEL rule) under
    spec; every rule's message starts with the path of its field."""
    for schema in _schemas():
        for path, node in _nodes(schema["properties"]["spec"], "spec"):
            assert "pattern" not in node and "enum" not in node, path
            for rule in node.get("x-kubernetes-validations", []):
                text = rule.get("message") or rule["messageExpression"].lstrip("'")
                field = path.replace("[]", "") + rule.get("fieldPath", "")
                assert text.startswith((f"{field} ", f"each of {field} ")), (path, rule)
                assert "^" not in text and "should match" not in text, (path, rule)


def test_every_string_list_and_map_under_spec_is_bounded_for_cel_cost_estimation() -> None:
    bound = {"string": "maxLength", "array": "maxItems"}
    for schema in _schemas():
        for path, node in _nodes(schema["properties"]["spec"], "spec"):
            if node.get("type") in bound and "format" not in node:
                assert bound[node["type"]] in node, path
            if isinstance(node.get("additionalProperties"), dict):
                assert "maxProperties" in node, path


def test_the_kinds_their_spec_and_status_and_every_spec_field_are_described() -> None:
    for schema in _schemas():
        assert schema["description"] and schema["properties"]["status"]["description"]
        for path, node in _nodes(schema["properties"]["spec"], "spec"):
            assert path.endswith("[]") or node.get("description"), path
