"""Post-training quantization with the TensorFlow Lite converter, and evaluation of each variant.

Variants, all converted from the chief's SavedModel:
- float32: plain conversion, the size baseline for the others;
- dynamic: weights stored as int8, activations computed in float (Optimize.DEFAULT);
- float16: weights stored as float16;
- int8: weights and activations int8, calibrated on a representative set of training
  examples. The model keeps float32 input and output, so callers need no rescaling.

tf.lite.TFLiteConverter is deprecated in TensorFlow 2.21 in favour of LiteRT (ai-edge-litert)
but still converts and runs these models. TensorFlow is imported inside the functions so
that the command-line parser, which reads the variant names, starts without it.
"""

import logging
import os
import time
from collections.abc import Iterator

import numpy as np

from gpuscale_trainer.errors import InputError
from gpuscale_trainer.report import VariantResult

log = logging.getLogger(__name__)

QUANTIZED_VARIANTS = ("dynamic", "float16", "int8")
COMPRESS_CHOICES = ("none", "all", *QUANTIZED_VARIANTS)
REPRESENTATIVE_EXAMPLES = 200
LATENCY_EXAMPLES = 200


def parse_compress(value: str) -> tuple[str, ...]:
    """Return the quantized variants that the `--compress` value selects, in a fixed order."""
    if value == "none":
        return ()
    if value == "all":
        return QUANTIZED_VARIANTS
    if value in QUANTIZED_VARIANTS:
        return (value,)
    raise InputError(f"--compress {value!r} is not one of {', '.join(COMPRESS_CHOICES)}.")


def convert(saved_model_dir: str, variant: str, representative_features: np.ndarray) -> bytes:
    """Convert the SavedModel to a TensorFlow Lite flatbuffer for `variant`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if variant == "float32":
        return converter.convert()

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.representative_dataset = _representative_batches(representative_features)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif variant != "dynamic":
        raise ValueError(f"unknown variant {variant!r}")
    return converter.convert()


def _representative_batches(features: np.ndarray):
    def batches() -> Iterator[list[np.ndarray]]:
        for example in features[:REPRESENTATIVE_EXAMPLES]:
            yield [example[np.newaxis].astype(np.float32)]

    return batches


def evaluate_tflite(name: str, model_bytes: bytes, features: np.ndarray, labels: np.ndarray) -> VariantResult:
    """Measure accuracy on all held-out examples and the mean single-example latency."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    interpreter.resize_tensor_input(input_index, list(features.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, features.astype(np.float32))
    interpreter.invoke()
    predictions = np.argmax(interpreter.get_tensor(output_index), axis=-1)
    accuracy = float(np.mean(predictions == labels))

    interpreter.resize_tensor_input(input_index, [1, *features.shape[1:]])
    interpreter.allocate_tensors()

    def predict_one(example: np.ndarray) -> None:
        interpreter.set_tensor(input_index, example[np.newaxis].astype(np.float32))
        interpreter.invoke()
        interpreter.get_tensor(output_index)

    latency_us = _mean_latency_us(predict_one, features)
    return VariantResult(name, "tflite", len(model_bytes), accuracy, latency_us)


def evaluate_keras(model, saved_model_dir: str, features: np.ndarray, labels: np.ndarray) -> VariantResult:
    """Evaluate the trained Keras model; its size is the SavedModel directory's size."""
    import tensorflow as tf

    logits = model(features, training=False)
    accuracy = float(np.mean(np.argmax(logits.numpy(), axis=-1) == labels))

    predict = tf.function(lambda example: model(example, training=False))
    latency_us = _mean_latency_us(lambda example: predict(example[np.newaxis]).numpy(), features)
    return VariantResult("original", "savedmodel", directory_size(saved_model_dir), accuracy, latency_us)


def _mean_latency_us(predict_one, features: np.ndarray) -> float:
    examples = features[:LATENCY_EXAMPLES]
    predict_one(examples[0])  # Warm-up: the first call allocates and traces.
    started = time.perf_counter()
    for example in examples:
        predict_one(example)
    return (time.perf_counter() - started) * 1e6 / len(examples)


def directory_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def compress_and_evaluate(
    model, saved_model_dir: str, output_dir: str, variants: tuple[str, ...], dataset
) -> list[VariantResult]:
    """Evaluate the original model and each variant, writing every .tflite file to output_dir.

    The float32 conversion is included whenever a quantized variant is, as the size baseline.
    """
    results = [evaluate_keras(model, saved_model_dir, dataset.test_features, dataset.test_labels)]
    if not variants:
        return results

    for variant in ("float32", *variants):
        started = time.perf_counter()
        model_bytes = convert(saved_model_dir, variant, dataset.train_features)
        with open(os.path.join(output_dir, f"model-{variant}.tflite"), "wb") as file:
            file.write(model_bytes)
        result = evaluate_tflite(variant, model_bytes, dataset.test_features, dataset.test_labels)
        log.info(
            "variant=%s size_bytes=%d accuracy=%.4f mean_latency_us=%.1f convert_s=%.1f",
            result.name,
            result.size_bytes,
            result.accuracy,
            result.mean_latency_us,
            time.perf_counter() - started,
        )
        results.append(result)
    return results
