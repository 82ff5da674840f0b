"""docs/api.md names every field of the models, so the reference cannot silently fall behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gpuscale.api import models

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOCUMENTED_MODELS = [
    models.TrainingJobSpec,
    models.TrainingJobStatus,
    models.Workers,
    models.Checkpoint,
    models.PodTemplateOverride,
    models.Resources,
    models.CostPolicySpec,
    models.CostPolicyStatus,
    models.GpuPricing,
    models.Rescaling,
]


@pytest.mark.parametrize("model", DOCUMENTED_MODELS, ids=lambda model: model.__name__)
def test_every_field_documented(model: type[BaseModel]) -> None:
    text = API_DOC.read_text()

    for name, field in model.model_fields.items():
        wire_name = field.alias or name
        spellings = (f"`{wire_name}`", f"`{wire_name}.", f".{wire_name}`")
        assert any(spelling in text for spelling in spellings), wire_name
