"""One log line per epoch, in a key=value form that `kubectl logs` and grep read well."""

import logging
import time

import tf_keras as keras

log = logging.getLogger(__name__)


class EpochLogger(keras.callbacks.Callback):
    """Log epoch, global step, loss, accuracy and examples per second after every epoch.

    Examples per second count the whole job (all workers), from the global batch size.
    An epoch cut short by a stop is logged with `stopped=true`.
    """

    def __init__(self, epochs: int, global_batch_size: int) -> None:
        super().__init__()
        self._epochs = epochs
        self._global_batch_size = global_batch_size
        self._epoch_started_at = 0.0
        self._epoch_start_step = 0
        self.start_step = 0
        self._first_step_logged = False

    def on_train_begin(self, logs=None):
        # Runs after BackupAndRestore.on_train_begin, so the step is the restored one.
        self.start_step = self._step()
        origin = "resumed from checkpoint" if self.start_step else "fresh start"
        log.info("training starts: step=%d (%s)", self.start_step, origin)

    def on_train_batch_end(self, batch, logs=None):
        if not self._first_step_logged:
            self._first_step_logged = True
            log.info("first step finished: step=%d", self._step())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started_at = time.perf_counter()
        self._epoch_start_step = self._step()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed_s = time.perf_counter() - self._epoch_started_at
        step = self._step()
        examples = (step - self._epoch_start_step) * self._global_batch_size
        throughput = examples / elapsed_s if elapsed_s > 0 else 0.0
        stopped = " stopped=true" if self.model.stop_training else ""
        log.info(
            "epoch=%d/%d step=%d loss=%.4f accuracy=%.4f examples_per_s=%.0f epoch_s=%.2f%s",
            epoch + 1,
            self._epochs,
            step,
            float(logs.get("loss", float("nan"))),
            float(logs.get("accuracy", float("nan"))),
            throughput,
            elapsed_s,
            stopped,
        )

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())
