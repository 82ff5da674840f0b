"""Graceful stop on SIGTERM, agreed by all workers at the same step.

The operator sends SIGTERM to every worker of a group when it rescales or suspends a job,
but the signals land at slightly different moments, so two workers may see them during
different steps. MultiWorkerMirroredStrategy runs every step as a collective all-reduce:
a worker that stops one step early leaves the others blocked forever in the next one.

The workers therefore vote inside the training step. Each worker keeps a local stop flag
(0 or 1) and the wrapped train step all-reduces it next to the gradients. Every worker
receives the same sum from the same step, so all of them see the stop at that step, save
the checkpoint collectively and leave `fit` together.

A watchdog thread bounds the time from SIGTERM to exit. The Python signal handler only
runs when the main thread returns to Python, which never happens if a peer died and the
main thread waits in a collective. The watchdog learns of the signal from the C-level
wakeup file descriptor instead. If the process is still alive when the stop timeout ends,
it exits with code 75, and a restart resumes from the last periodic checkpoint.
"""

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras

from gpuscale_trainer.errors import EXIT_PREEMPTED

log = logging.getLogger(__name__)

# The key under which the wrapped train step returns the all-reduced stop votes.
STOP_VOTES_KEY = "stop_votes"


class StopRequest:
    """SIGTERM state shared by the signal handler, the stop callback and the watchdog."""

    def __init__(self, timeout_s: float, on_timeout: Callable[[str], None] | None = None) -> None:
        """`on_timeout` receives the watchdog's message just before the forced exit."""
        self.timeout_s = timeout_s
        self._on_timeout = on_timeout
        self.received_at: float | None = None
        self._event = threading.Event()
        self._wakeup_reader: socket.socket | None = None
        self._wakeup_writer: socket.socket | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        """Install the SIGTERM handler and start the watchdog; call from the main thread.

        Call it again after creating MultiWorkerMirroredStrategy: TensorFlow's coordination
        service installs its own C++ SIGTERM handler (its preemption notifier) and thereby
        replaces this one. A SIGTERM that arrives in between is lost.
        """
        if self._wakeup_writer is None:
            self._wakeup_reader, self._wakeup_writer = socket.socketpair()
            self._wakeup_writer.setblocking(False)
            threading.Thread(target=self._watch, name="stop-watchdog", daemon=True).start()
        signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._handle_sigterm)

    def _handle_sigterm(self, signum: int, frame: object) -> None:
        if not self._event.is_set():
            log.info("SIGTERM received; stopping at the step all workers agree on")
        self._mark_received()

    def _mark_received(self) -> None:
        if self.received_at is None:
            self.received_at = time.monotonic()
        self._event.set()

    def _watch(self) -> None:
        assert self._wakeup_reader is not None
        # The wakeup descriptor carries one byte per signal number, for every signal that
        # has a Python handler (SIGINT too), so wait for the SIGTERM byte.
        while True:
            data = self._wakeup_reader.recv(64)
            if not data:
                return  # The socket was closed: nothing left to watch.
            if signal.SIGTERM in data:
                break
        self._mark_received()

        time.sleep(self.timeout_s)
        message = (
            f"worker did not stop within {self.timeout_s:.0f} s of SIGTERM (a peer may have died "
            "mid-step); a restart resumes from the last periodic checkpoint"
        )
        log.error("%s; exiting with %d", message, EXIT_PREEMPTED)
        if self._on_timeout is not None:
            self._on_timeout(message)
        logging.shutdown()
        os._exit(EXIT_PREEMPTED)


def add_stop_vote(model: keras.Model, stop_flag: tf.Variable) -> None:
    """Wrap `model.train_step` so every step all-reduces this worker's stop flag.

    `stop_flag` must be created outside the strategy scope, so that it stays a local
    float32 variable on each worker instead of a mirrored one.
    """
    plain_train_step = model.train_step

    def train_step_with_stop_vote(data):
        logs = dict(plain_train_step(data))
        replica_context = tf.distribute.get_replica_context()
        logs[STOP_VOTES_KEY] = replica_context.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.identity(stop_flag)
        )
        return logs

    model.train_step = train_step_with_stop_vote


def remove_stop_vote(model: keras.Model) -> None:
    """Remove the wrapped train step, so that the saved model contains the class's own."""
    model.__dict__.pop("train_step", None)


class StopAtAgreedStep(keras.callbacks.Callback):
    """Feed SIGTERM into the stop vote, and end `fit` at the step where the vote passes.

    `save_checkpoint` is called with no arguments at that step, on every worker, before
    `fit` returns. `stopped_at_step` is then the global step the checkpoint holds.
    """

    def __init__(self, stop_request: StopRequest, stop_flag: tf.Variable, save_checkpoint) -> None:
        super().__init__()
        self._stop_request = stop_request
        self._stop_flag = stop_flag
        self._save_checkpoint = save_checkpoint
        self._voted = False
        self.stopped_at_step: int | None = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._stop_request.requested and not self._voted:
            self._stop_flag.assign(1.0)
            self._voted = True

    def on_train_batch_end(self, batch, logs=None):
        votes = float((logs or {}).get(STOP_VOTES_KEY, 0.0))
        if votes <= 0 or self.stopped_at_step is not None:
            return
        step = int(self.model.optimizer.iterations.numpy())
        log.info("stop agreed at step %d (%.0f replica vote(s)); saving a checkpoint", step, votes)
        self._save_checkpoint()
        self.stopped_at_step = step
        self.model.stop_training = True
