"""Pure allocation policy: decides how many workers every TrainingJob runs.

Nothing here imports kopf or the Kubernetes client. The operator's allocation loop and the
trace-driven simulator (`gpuscale.sim`) build the same plain dataclasses and call `allocate`.
"""

from gpuscale.scheduling.policy import (
    Allocation,
    Ceiling,
    Change,
    ChangeReason,
    GpuPool,
    JobDecision,
    JobRequest,
    PolicySettings,
    ScalingModel,
    WaitInfo,
    WaitReason,
    allocate,
)

__all__ = [
    "Allocation",
    "Ceiling",
    "Change",
    "ChangeReason",
    "GpuPool",
    "JobDecision",
    "JobRequest",
    "PolicySettings",
    "ScalingModel",
    "WaitInfo",
    "WaitReason",
    "allocate",
]
