"""The manifests in manifests/examples/: valid ones parse, every file in invalid/ is rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuscale.api.parsing import InvalidObjectError, parse_cost_policy, parse_training_job

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
# digits.yaml and any other example are checked too, but only these must exist.
REQUIRED_VALID = ["three-workers.yaml", "cost-policy.yaml"]


def parse_manifest(path: Path) -> Any:
    document = yaml.safe_load(path.read_text())
    if document["kind"] == "TrainingJob":
        return parse_training_job(document)
    if document["kind"] == "CostPolicy":
        return parse_cost_policy(document)
    raise AssertionError(f"{path}: unexpected kind {document['kind']}")


def test_required_examples_exist() -> None:
    for name in REQUIRED_VALID:
        assert (EXAMPLES / name).is_file(), name


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_valid_example_parses(path: Path) -> None:
    parse_manifest(path)


def test_three_workers_example() -> None:
    job = parse_manifest(EXAMPLES / "three-workers.yaml")

    assert job.spec.image == "gpuscale/trainer:0.1.0"
    assert job.spec.workers.min == 3
    assert job.spec.gpus_per_worker == 1


# Each invalid file and a fragment of the error it must cause, so a file that fails for an
# unrelated reason (a typo elsewhere) does not pass.
INVALID_EXPECTED = {
    "negative-workers.yaml": "spec.workers.min",
    "zero-workers.yaml": "spec.workers.min",
    "min-greater-than-max.yaml": "workers.min (4) must be less than or equal to workers.max",
    "update-min-greater-than-max.yaml": "workers.min (3) must be less than or equal to workers.max",
    "fractional-gpus.yaml": "spec.gpusPerWorker",
    "negative-gpus.yaml": "spec.gpusPerWorker",
    "port-22.yaml": "spec.port",
    "port-70000.yaml": "spec.port",
    "misspelled-gpu-per-worker.yaml": "did you mean gpusPerWorker",
    "missing-image.yaml": "spec.image: required field is missing",
    "name-70-characters.yaml": "70 characters long",
    "name-not-dns-1035.yaml": "not a DNS-1035 label",
    "costpolicy-negative-price.yaml": "spec.gpuPricing.prices.NVIDIA-L4",
    "costpolicy-non-number-ceiling.yaml": "spec.ceilingPerHour",
}


@pytest.mark.parametrize(("name", "fragment"), sorted(INVALID_EXPECTED.items()))
def test_invalid_example_rejected(name: str, fragment: str) -> None:
    with pytest.raises(InvalidObjectError) as caught:
        parse_manifest(EXAMPLES / "invalid" / name)

    assert fragment in str(caught.value)


def test_invalid_folder_has_no_untested_file() -> None:
    names = {path.name for path in (EXAMPLES / "invalid").glob("*.yaml")}

    assert names == set(INVALID_EXPECTED)
