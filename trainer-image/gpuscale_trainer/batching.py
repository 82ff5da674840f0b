"""Batch arithmetic: the job fixes the global batch, and each replica takes an equal share.

Keeping the global batch fixed while the worker count changes keeps one optimizer step
the same computation at any scale, so a rescaled job follows the same optimization.
"""

from gpuscale_trainer.errors import InputError


def per_replica_batch_size(global_batch_size: int, num_replicas: int, num_workers: int) -> int:
    """Return global_batch_size / num_replicas, or raise InputError when it does not divide.

    A replica is one device taking part in training: one per worker on CPU, one per GPU
    otherwise. Rounding is rejected because it would change the global batch with the
    worker count.
    """
    if global_batch_size < 1:
        raise InputError(f"--global-batch-size {global_batch_size} must be at least 1.")
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
    if global_batch_size % num_replicas:
        raise InputError(
            f"--global-batch-size {global_batch_size} is not divisible by the "
            f"{num_replicas} replica(s) of {num_workers} worker(s). Choose a multiple of "
            "every worker count the job may run at (for example 96 for 1 to 4 workers "
            "with one device each)."
        )
    return global_batch_size // num_replicas


def derive_steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Return the number of full global batches in one pass over the training examples.

    The partial last batch is dropped, so the step count does not depend on the
    worker count either.
    """
    steps = num_examples // global_batch_size
    if steps < 1:
        raise InputError(
            f"--global-batch-size {global_batch_size} is larger than the "
            f"{num_examples} training examples; lower it or pass --steps-per-epoch."
        )
    return steps
