"""The TrainingJob and CostPolicy API: pydantic models, parsing helpers and CRD generation."""
