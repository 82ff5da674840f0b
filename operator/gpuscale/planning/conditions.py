"""Status conditions that follow the Kubernetes API conventions."""

from __future__ import annotations


def set_condition(conditions: list[dict], type_: str, status: bool, reason: str, message: str,
                  now: str, observed_generation: int) -> None:
    """Add or update the condition of `type_` in place.

    lastTransitionTime changes only when the status flips, so it records when the state last changed.
    """
    value = "True" if status else "False"
    for condition in conditions:
        if condition["type"] == type_:
            if condition["status"] != value:
                condition["lastTransitionTime"] = now
            condition.update(status=value, reason=reason, message=message, observedGeneration=observed_generation)
            return
    conditions.append({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": now, "observedGeneration": observed_generation,
    })


def get_condition(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c["type"] == type_), None)
