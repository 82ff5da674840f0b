"""Exit codes shared with the operator, and the exceptions that map to them."""

# The operator reads these codes from the container status.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# EX_TEMPFAIL from sysexits.h: the worker was asked to stop and may be restarted,
# at any worker count, from the checkpoint directory.
EXIT_PREEMPTED = 75


class InputError(Exception):
    """Bad TF_CONFIG, arguments, dataset, model or checkpoint; the process exits with 2.

    The message names the bad value and the fix, because it ends up in the pod's
    termination message and the TrainingJob status.
    """
