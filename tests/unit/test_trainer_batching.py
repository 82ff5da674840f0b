import pytest

from gpuscale_trainer.batching import derive_steps_per_epoch, per_replica_batch_size
from gpuscale_trainer.errors import InputError


@pytest.mark.parametrize(
    ("global_batch", "replicas", "expected"),
    [(96, 1, 96), (96, 2, 48), (96, 3, 32), (96, 4, 24), (8, 8, 1)],
)
def test_per_replica_batch_divides(global_batch, replicas, expected):
    assert per_replica_batch_size(global_batch, replicas, num_workers=replicas) == expected


def test_per_replica_batch_keeps_global_batch():
    for replicas in (1, 2, 3, 4, 6):
        assert per_replica_batch_size(96, replicas, replicas) * replicas == 96


def test_indivisible_global_batch_rejected():
    with pytest.raises(InputError) as raised:
        per_replica_batch_size(64, 3, num_workers=3)
    message = str(raised.value)
    assert "--global-batch-size 64" in message
    assert "3 replica(s) of 3 worker(s)" in message


def test_global_batch_below_replicas_rejected():
    with pytest.raises(InputError):
        per_replica_batch_size(2, 4, num_workers=4)


def test_zero_global_batch_rejected():
    with pytest.raises(InputError) as raised:
        per_replica_batch_size(0, 1, num_workers=1)
    assert "at least 1" in str(raised.value)


def test_steps_per_epoch_drops_partial_batch():
    assert derive_steps_per_epoch(1437, 96) == 14
    assert derive_steps_per_epoch(96, 96) == 1


def test_steps_per_epoch_independent_of_workers():
    # The step count comes from the global batch only, never from the worker count.
    assert derive_steps_per_epoch(1437, 96) * 96 <= 1437


def test_batch_larger_than_dataset_rejected():
    with pytest.raises(InputError) as raised:
        derive_steps_per_epoch(50, 96)
    assert "larger than the 50 training examples" in str(raised.value)
