"""The digits TrainingJob trains for real under the operator, its pods run by the dev pod runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.operator_process import PodRunnerProcess
from tests.e2e.kube import Kubectl, wait_until
from tests.e2e.operator_process import OperatorProcess

pytestmark = [pytest.mark.training, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGITS_MANIFEST = REPO_ROOT / "manifests" / "examples" / "digits.yaml"
TRAINING_TIMEOUT_SECONDS = 600


def finished_status(kubectl: Kubectl, namespace: str) -> dict | None:
    status = kubectl.get("trainingjob", "digits", namespace).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_digits_job_succeeds_with_result(kubectl: Kubectl, operator: OperatorProcess, namespace: str,
                                         pod_runner: PodRunnerProcess) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(DIGITS_MANIFEST))

    status = wait_until(lambda: finished_status(kubectl, namespace), timeout=TRAINING_TIMEOUT_SECONDS, interval=2,
                        what="the digits TrainingJob to finish")
    chief_log = pod_runner.pod_log("digits-g1-w0")
    context = f"status: {json.dumps(status)}\nchief log tail:\n{chief_log[-2000:]}\nrunner log:\n{pod_runner.log_tail()}"
    assert status["phase"] == "Succeeded", context

    result = status["result"]
    assert result["outcome"] == "succeeded", context
    assert result["accuracy"] >= 0.90, context
    # The operator picks the worker count within spec.workers (min 2, max 3) from the free GPUs.
    assert 2 <= result["workers"] <= 3, context
    assert result["steps"] > 0, context
    assert "int8" in result["compressed"], context
    assert "epoch=" in chief_log
    report = json.loads(Path(result["report"]).read_text())
    assert {variant["name"] for variant in report["variants"]} >= {"int8", "float16", "dynamic"}
