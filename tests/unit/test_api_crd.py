"""The generated CRDs: current, structural, and complete for what the operator writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuscale.api import crd, models

REPOSITORY = Path(__file__).resolve().parents[2]
CRDS = REPOSITORY / "crds"


def schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def openapi_schema(definition: dict[str, Any]) -> dict[str, Any]:
    return definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crds_folder_is_current() -> None:
    stale = crd.stale_files(CRDS)

    assert stale == [], "crds/ is stale: run `make crds` and commit the result\n" + "\n".join(stale)


def test_check_fails_on_stale_folder(tmp_path: Path) -> None:
    assert crd.main(["--out", str(tmp_path)]) == 0
    assert crd.main(["--check", "--out", str(tmp_path)]) == 0

    edited = tmp_path / "trainingjobs.training.gpuscale.io.yaml"
    edited.write_text(edited.read_text().replace("maximum: 65535", "maximum: 65536"))

    assert crd.main(["--check", "--out", str(tmp_path)]) == 1


def test_check_fails_on_missing_file(tmp_path: Path) -> None:
    assert crd.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("build", [crd.training_job_crd, crd.cost_policy_crd])
def test_schema_is_structural(build: Any) -> None:
    root = openapi_schema(build())

    for path, node in schema_nodes(root):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert "type" in node, path
        if "properties" in node:
            assert "additionalProperties" not in node, path


@pytest.mark.parametrize(
    ("build", "model"),
    [
        (crd.training_job_crd, models.TrainingJobStatus),
        (crd.cost_policy_crd, models.CostPolicyStatus),
    ],
)
def test_status_declares_every_model_field(build: Any, model: type) -> None:
    status = openapi_schema(build())["properties"]["status"]["properties"]

    for name, field in model.model_fields.items():
        assert (field.alias or name) in status


def test_spec_rejects_unknown_fields() -> None:
    spec = openapi_schema(crd.training_job_crd())["properties"]["spec"]

    assert "x-kubernetes-preserve-unknown-fields" not in spec
    assert "x-kubernetes-preserve-unknown-fields" not in spec["properties"]["workers"]


def test_training_job_names_and_subresources() -> None:
    definition = crd.training_job_crd()
    version = definition["spec"]["versions"][0]

    assert definition["metadata"]["name"] == "trainingjobs.training.gpuscale.io"
    assert definition["spec"]["names"]["shortNames"] == ["tj"]
    assert definition["spec"]["names"]["categories"] == ["gpuscale"]
    assert definition["spec"]["scope"] == "Namespaced"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.workers.max"
    columns = [
        column["name"] for column in version["additionalPrinterColumns"] if "priority" not in column
    ]
    assert columns == ["Phase", "Workers", "GPUs", "Cost/h", "Age"]


def test_cost_policy_names_and_columns() -> None:
    definition = crd.cost_policy_crd()
    version = definition["spec"]["versions"][0]

    assert definition["spec"]["scope"] == "Cluster"
    assert definition["spec"]["names"]["categories"] == ["gpuscale"]
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Spend/h", "Ceiling/h", "GPUs", "Admitted", "Queued"]


def test_name_rules_at_root() -> None:
    rules = openapi_schema(crd.training_job_crd())["x-kubernetes-validations"]

    assert "self.metadata.name.size() <= 40" in [rule["rule"] for rule in rules]
    assert all(rule["message"] for rule in rules)


def test_cross_field_rules_present() -> None:
    spec = openapi_schema(crd.training_job_crd())["properties"]["spec"]

    assert (
        spec["properties"]["workers"]["x-kubernetes-validations"][0]["rule"]
        == "self.min <= self.max"
    )
    assert spec["properties"]["port"]["minimum"] == 1024
    assert spec["properties"]["port"]["default"] == 2222
    assert spec["properties"]["gpusPerWorker"]["type"] == "integer"
    assert set(spec["required"]) == {"image", "workers", "gpusPerWorker"}


def test_committed_files_parse_as_yaml() -> None:
    for path in CRDS.glob("*.training.gpuscale.io.yaml"):
        document = yaml.safe_load(path.read_text())
        assert document["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize("build", [crd.training_job_crd, crd.cost_policy_crd])
def test_cel_rules_escape_backslashes(build: Any) -> None:
    # CEL reads a backslash in a string literal as an escape, and `\.` is not a valid one, so a
    # regular expression inside a rule must spell each backslash as `\\`.
    for path, node in schema_nodes(openapi_schema(build())):
        for rule in node.get("x-kubernetes-validations", []):
            assert "\\" not in rule["rule"].replace("\\\\", ""), path
