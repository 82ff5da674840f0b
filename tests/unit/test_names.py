"""Child names and labels stay valid DNS labels and label values."""

from __future__ import annotations

import re

import pytest

from gpuscale.api.models import MAX_JOB_NAME_LENGTH, MAX_WORKERS
from gpuscale.planning import names

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LONGEST_JOB = "j" + "x" * (MAX_JOB_NAME_LENGTH - 2) + "z"


def test_pod_name_format() -> None:
    assert names.pod_name("mnist", 3, 1) == "mnist-g3-w1"


def test_longest_names_fit_dns_label() -> None:
    assert len(LONGEST_JOB) == 40

    pod = names.pod_name(LONGEST_JOB, 999999, MAX_WORKERS - 1)

    assert len(pod) <= 63
    assert DNS_1123_LABEL.match(pod)
    assert len(names.service_name(LONGEST_JOB)) <= 63


def test_longest_labels_are_valid() -> None:
    labels = names.pod_labels(LONGEST_JOB, 999999, MAX_WORKERS - 1)

    for value in labels.values():
        assert len(value) <= 63
        assert LABEL_VALUE.match(value), value


def test_pod_labels_follow_contract() -> None:
    labels = names.pod_labels("mnist", 2, 0)

    assert labels["training.gpuscale.io/job-name"] == "mnist"
    assert labels["training.gpuscale.io/worker-index"] == "0"
    assert labels["training.gpuscale.io/generation"] == "2"


def test_worker_host() -> None:
    assert names.worker_host("mnist", "team-a", 1, 2) == "mnist-g1-w2.mnist.team-a.svc"


def test_selector_matches_pod_labels() -> None:
    selector = names.job_selector("mnist")
    labels = names.pod_labels("mnist", 5, 3)

    assert selector.items() <= labels.items()
    assert names.job_selector_string("mnist") == "training.gpuscale.io/job-name=mnist"


def test_names_unique_across_groups() -> None:
    pods = {
        names.pod_name("job", generation, index)
        for generation in range(1, 30)
        for index in range(64)
    }

    assert len(pods) == 29 * 64


@pytest.mark.parametrize(("generation", "index"), [(0, 0), (1, -1), (1, MAX_WORKERS)])
def test_pod_name_rejects_bad_numbers(generation: int, index: int) -> None:
    with pytest.raises(ValueError):
        names.pod_name("mnist", generation, index)


def test_pod_name_rejects_overlong_job() -> None:
    with pytest.raises(ValueError, match="too long"):
        names.pod_name("x" * 60, 1, 0)
