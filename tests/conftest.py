"""Shared pytest wiring: the `e2e` marker is applied to everything under tests/e2e.

The local control plane is started only by the fixtures in tests/e2e/conftest.py, and only when an
e2e test requests it, so pure unit tests never start a cluster.
"""

from pathlib import Path

import pytest

E2E_DIR = Path(__file__).parent / "e2e"
TRAINING_DIR = Path(__file__).parent / "training"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if E2E_DIR in path.parents:
            item.add_marker(pytest.mark.e2e)
        if TRAINING_DIR in path.parents:
            item.add_marker(pytest.mark.training)
