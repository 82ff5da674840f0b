import numpy as np
import pytest

from gpuscale_trainer.data import ArrayDataset, load_dataset, validate_dataset
from gpuscale_trainer.errors import InputError
from gpuscale_trainer.plugins import load_function


def make_dataset(**overrides):
    fields = {
        "train_features": np.zeros((8, 4), dtype=np.float32),
        "train_labels": np.array([0, 1, 2, 0, 1, 2, 0, 1]),
        "test_features": np.ones((3, 4), dtype=np.float64),
        "test_labels": np.array([0, 1, 2]),
        "num_classes": 3,
    }
    fields.update(overrides)
    return ArrayDataset(**fields)


def test_valid_dataset_converted_to_float32():
    dataset = validate_dataset(make_dataset(), "hook:load")
    assert dataset.test_features.dtype == np.float32
    assert dataset.train_labels.dtype == np.int64
    assert dataset.feature_shape == (4,)


@pytest.mark.parametrize(
    ("overrides", "expected_text"),
    [
        ({"num_classes": 1}, "num_classes is 1"),
        ({"train_labels": np.array([0, 1, 2, 0, 1, 2, 0, 3])}, "train labels span 0..3; expected 0..2"),
        ({"test_labels": np.array([-1, 0, 1])}, "test labels span -1..1"),
        ({"train_labels": np.zeros(7, dtype=np.int64)}, "train labels have shape (7,); expected (8,)"),
        ({"test_labels": np.array([0.0, 1.0, 2.0])}, "expected integers"),
        ({"train_features": np.full((8, 4), np.nan)}, "must be finite numbers"),
        ({"train_features": np.zeros((0, 4))}, "at least one example"),
        ({"train_features": np.zeros(8)}, "expected (examples, ...)"),
        ({"test_features": np.zeros((3, 5))}, "train features have shape (4,) per example but test features have (5,)"),
        ({"train_features": [[0.0] * 4] * 8}, "must be numpy arrays"),
    ],
)
def test_malformed_dataset_rejected(overrides, expected_text):
    with pytest.raises(InputError) as raised:
        validate_dataset(make_dataset(**overrides), "hook:load")
    assert expected_text in str(raised.value)
    assert "'hook:load'" in str(raised.value)


def test_wrong_return_type_rejected():
    with pytest.raises(InputError) as raised:
        validate_dataset({"features": []}, "hook:load")
    assert "returned dict; expected gpuscale_trainer.data.ArrayDataset" in str(raised.value)


def test_digits_split_is_stratified_and_scaled():
    dataset = load_dataset(None, seed=0)
    assert len(dataset.train_labels) == 1437
    assert len(dataset.test_labels) == 360
    assert dataset.feature_shape == (64,)
    assert dataset.train_features.max() <= 1.0
    assert sorted(set(dataset.test_labels)) == list(range(10))


@pytest.mark.parametrize(
    ("spec", "expected_text"),
    [
        ("no_colon", "must have the form 'package.module:function'"),
        (":load", "must have the form"),
        ("json:", "must have the form"),
        ("no_such_module_for_tests:load", "cannot import module 'no_such_module_for_tests'"),
        ("json:no_such_function", "module 'json' has no function 'no_such_function'"),
    ],
)
def test_bad_hook_spec_rejected(spec, expected_text):
    with pytest.raises(InputError) as raised:
        load_function(spec, "--dataset")
    assert expected_text in str(raised.value)


def test_hook_loaded():
    assert load_function("json:dumps", "--dataset")([1]) == "[1]"


def test_failing_hook_reported(monkeypatch, tmp_path):
    (tmp_path / "failing_hook_for_tests.py").write_text("def load(seed):\n    raise OSError('disk gone')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError) as raised:
        load_dataset("failing_hook_for_tests:load", seed=0)
    assert "--dataset 'failing_hook_for_tests:load' failed: OSError: disk gone" in str(raised.value)
