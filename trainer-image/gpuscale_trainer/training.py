"""One training run on one worker: setup, `fit`, then export and compression on the chief."""

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from gpuscale_trainer.batching import derive_steps_per_epoch, per_replica_batch_size
from gpuscale_trainer.checkpoints import ElasticBackupAndRestore, validate_checkpoint_dir
from gpuscale_trainer.cluster import WorkerTopology
from gpuscale_trainer.compression import compress_and_evaluate, parse_compress
from gpuscale_trainer.data import ArrayDataset, load_dataset, make_input_fn
from gpuscale_trainer.errors import EXIT_PREEMPTED, EXIT_SUCCEEDED
from gpuscale_trainer.models import build_model
from gpuscale_trainer.preemption import StopAtAgreedStep, StopRequest, add_stop_vote, remove_stop_vote
from gpuscale_trainer.progress import EpochLogger
from gpuscale_trainer.report import (
    TrainingResult,
    build_report,
    build_stop_summary,
    build_summary,
    write_report,
    write_termination_message,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOptions:
    """The command-line options, validated by the parser."""

    global_batch_size: int
    epochs: int
    steps_per_epoch: int | None
    learning_rate: float
    checkpoint_dir: str | None
    checkpoint_every_steps: int
    output_dir: str
    compress: str
    seed: int
    model: str | None
    dataset: str | None
    stop_timeout_s: float


def run(options: TrainingOptions, topology: WorkerTopology, env: Mapping[str, str]) -> int:
    """Train on this worker and return the exit code (0 finished, 75 preempted).

    Raises InputError for bad input found before or while restoring.
    """
    def report_stop_timeout(message: str) -> None:
        write_termination_message(build_stop_summary("preempted", EXIT_PREEMPTED, message), env)

    stop_request = StopRequest(options.stop_timeout_s, on_timeout=report_stop_timeout)
    stop_request.install()
    variants = parse_compress(options.compress)

    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    # It reads TF_CONFIG itself and waits here until every worker has connected.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    stop_request.install()  # Again: the strategy's coordination service replaced the handler.
    keras.utils.set_random_seed(options.seed)
    dataset, steps_per_epoch = _prepare_input(options, topology, strategy)
    model, stop_flag = _compile_model(options, strategy, dataset)

    backup = None
    if options.checkpoint_dir:
        backup = ElasticBackupAndRestore(options.checkpoint_dir, save_freq=options.checkpoint_every_steps)
    stopper = StopAtAgreedStep(stop_request, stop_flag, save_checkpoint=backup.save_now if backup else _no_save)
    epoch_logger = EpochLogger(options.epochs, options.global_batch_size)
    callbacks = [callback for callback in (backup, stopper, epoch_logger) if callback is not None]

    model.fit(
        strategy.distribute_datasets_from_function(
            make_input_fn(dataset, options.global_batch_size, options.seed)
        ),
        epochs=options.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=0,
    )
    remove_stop_vote(model)

    if stopper.stopped_at_step is not None:
        return _report_preempted(stopper.stopped_at_step, env)
    if stop_request.requested:
        log.info("SIGTERM arrived after the last step; finishing the export")

    training = TrainingResult(
        steps=int(model.optimizer.iterations.numpy()),
        start_step=epoch_logger.start_step,
        epochs=options.epochs,
        workers=topology.num_workers,
        global_batch_size=options.global_batch_size,
        accuracy=_accuracy(model, dataset),
    )
    log.info("training finished: step=%d held_out_accuracy=%.4f", training.steps, training.accuracy)
    _export(model, topology, options, dataset, training, variants, env)
    return EXIT_SUCCEEDED


def _prepare_input(
    options: TrainingOptions, topology: WorkerTopology, strategy: tf.distribute.Strategy
) -> tuple[ArrayDataset, int]:
    """Check the batch split and the checkpoint directory, load the data, and log the setup."""
    replicas = strategy.num_replicas_in_sync
    per_replica = per_replica_batch_size(options.global_batch_size, replicas, topology.num_workers)
    dataset = load_dataset(options.dataset, options.seed)
    steps_per_epoch = options.steps_per_epoch or derive_steps_per_epoch(
        len(dataset.train_labels), options.global_batch_size
    )

    if options.checkpoint_dir:
        saved_step = validate_checkpoint_dir(options.checkpoint_dir)
        if saved_step is None:
            log.info("checkpoint directory %s has no checkpoint yet", options.checkpoint_dir)
        else:
            log.info("checkpoint directory %s: latest checkpoint at step %d", options.checkpoint_dir, saved_step)
    else:
        log.warning("no --checkpoint-dir or GPUSCALE_CHECKPOINT_DIR: a restart starts from step 0")

    log.info(
        "setup: replicas=%d global_batch_size=%d per_replica_batch_size=%d steps_per_epoch=%d "
        "epochs=%d train_examples=%d held_out_examples=%d",
        replicas,
        options.global_batch_size,
        per_replica,
        steps_per_epoch,
        options.epochs,
        len(dataset.train_labels),
        len(dataset.test_labels),
    )
    return dataset, steps_per_epoch


def _compile_model(
    options: TrainingOptions, strategy: tf.distribute.Strategy, dataset: ArrayDataset
) -> tuple[keras.Model, tf.Variable]:
    """Build and compile the model in the strategy scope, with the stop vote in its train step."""
    with strategy.scope():
        model = build_model(options.model, dataset.feature_shape, dataset.num_classes)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=options.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    # Created outside the strategy scope, so it stays a local, unmirrored variable.
    stop_flag = tf.Variable(0.0, trainable=False, name="stop_flag")
    add_stop_vote(model, stop_flag)
    # tf-keras sums step outputs over MultiWorkerMirroredStrategy workers by default, which
    # doubles the logged accuracy on 2 workers. The stop votes are already all-reduced, and
    # loss and accuracy are then this worker's running averages.
    model.distribute_reduction_method = "first"
    return model, stop_flag


def _no_save() -> None:
    pass


def _accuracy(model: keras.Model, dataset: ArrayDataset) -> float:
    logits = model(dataset.test_features, training=False).numpy()
    return float(np.mean(np.argmax(logits, axis=-1) == dataset.test_labels))


def _report_preempted(step: int, env: Mapping[str, str]) -> int:
    message = f"stopped on SIGTERM; checkpoint saved at step {step}"
    log.info("%s; exiting with %d", message, EXIT_PREEMPTED)
    write_termination_message(build_stop_summary("preempted", EXIT_PREEMPTED, message, step), env)
    return EXIT_PREEMPTED


def _export(
    model: keras.Model,
    topology: WorkerTopology,
    options: TrainingOptions,
    dataset: ArrayDataset,
    training: TrainingResult,
    variants: tuple[str, ...],
    env: Mapping[str, str],
) -> None:
    """Save the SavedModel on every worker, then compress and report on the chief only.

    Every worker calls `save` because saving a distributed model may run collective ops;
    non-chief workers save into a local scratch directory and delete it.
    """
    if not topology.is_chief:
        scratch_dir = tempfile.mkdtemp(prefix="gpuscale-scratch-")
        try:
            model.save(os.path.join(scratch_dir, "saved_model"), include_optimizer=False)
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)
        write_termination_message({"outcome": "succeeded", "role": "worker", "steps": training.steps}, env)
        return

    os.makedirs(options.output_dir, exist_ok=True)
    saved_model_dir = os.path.join(options.output_dir, "saved_model")
    model.save(saved_model_dir, include_optimizer=False)
    log.info("SavedModel written to %s", saved_model_dir)

    results = compress_and_evaluate(model, saved_model_dir, options.output_dir, variants, dataset)
    report = build_report(training, results, held_out_examples=len(dataset.test_labels))
    report_path = write_report(report, options.output_dir)
    log.info("report written to %s", report_path)
    write_termination_message(build_summary(training, results, report_path), env)
