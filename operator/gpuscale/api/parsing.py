"""Parse raw objects from the API server into the models, with errors a kubectl user can act on."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gpuscale.api.models import (
    CostPolicy,
    CostPolicySpec,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class InvalidObjectError(ValueError):
    """A TrainingJob or CostPolicy that does not match its model.

    `problems` has one line per invalid field: the field path, what is wrong, the value given and,
    where it helps, the fix.
    """

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = problems
        numbered = " ".join(f"({number}) {problem}." for number, problem in enumerate(problems, 1))
        super().__init__(f"{subject} is invalid: {numbered}")


def parse_training_job(body: Mapping[str, Any]) -> TrainingJob:
    """Parse a whole TrainingJob object (metadata, spec, status) as the API server returns it."""
    return _parse(TrainingJob, body, f"TrainingJob {_namespaced_name(body)}", prefix="")


def parse_training_job_spec(spec: Mapping[str, Any], name: str = "") -> TrainingJobSpec:
    """Parse the spec of a TrainingJob; `name` only labels the error message."""
    return _parse(TrainingJobSpec, spec, f"TrainingJob {name}".strip(), prefix="spec")


def parse_training_job_status(
    status: Mapping[str, Any] | None, name: str = ""
) -> TrainingJobStatus:
    """Parse the status of a TrainingJob; a missing status gives an empty model."""
    return _parse(
        TrainingJobStatus, status or {}, f"TrainingJob {name} status".strip(), prefix="status"
    )


def parse_cost_policy(body: Mapping[str, Any]) -> CostPolicy:
    """Parse a whole CostPolicy object as the API server returns it."""
    return _parse(CostPolicy, body, f"CostPolicy {_namespaced_name(body)}", prefix="")


def parse_cost_policy_spec(spec: Mapping[str, Any], name: str = "") -> CostPolicySpec:
    """Parse the spec of a CostPolicy; `name` only labels the error message."""
    return _parse(CostPolicySpec, spec, f"CostPolicy {name}".strip(), prefix="spec")


def to_plain(value: Any) -> Any:
    """Copy mappings and sequences (kopf's Body and Spec views too) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


def _parse(model: type[ModelT], raw: Mapping[str, Any], subject: str, prefix: str) -> ModelT:
    try:
        return model.model_validate(to_plain(raw))
    except ValidationError as error:
        problems = [_describe(model, item, prefix) for item in error.errors(include_url=False)]
        raise InvalidObjectError(subject, problems) from error


def _namespaced_name(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "<unnamed>")
    return f"{namespace}/{name}" if namespace else str(name)


def _describe(model: type[BaseModel], item: Mapping[str, Any], prefix: str) -> str:
    location = [part for part in item["loc"]]
    path = _format_path(prefix, location)
    kind = item["type"]
    message = str(item["msg"]).removeprefix("Value error, ")

    if kind == "extra_forbidden":
        field = str(location[-1])
        known = _known_fields(model, location[:-1])
        hint = ""
        close = difflib.get_close_matches(field, known, n=1)
        if close:
            hint = f"; did you mean {close[0]}?"
        elif known:
            hint = f"; known fields here: {', '.join(sorted(known))}"
        return f"{path}: unknown field{hint}"
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "value_error":
        # Our own validators already name the fields, the values and the fix.
        return f"{path}: {message}" if path else message
    return f"{path}: {message} (got {item.get('input')!r})"


def _format_path(prefix: str, location: list[Any]) -> str:
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _known_fields(model: type[BaseModel], location: list[Any]) -> list[str]:
    """Return the wire names of the fields of the model found at `location`, or [] if none."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)), None
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    """Find the model class inside an annotation such as `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None
