"""The CRDs in crds/ are exactly what the pydantic models render: the two cannot drift."""

from __future__ import annotations

import pathlib

import yaml

from dbops import crdgen
from dbops.models import DBRestoreSpec

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
