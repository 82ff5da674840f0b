"""The checkpoint directory: validation before training, and periodic and final backups.

Checkpoints are written by tf.keras's BackupAndRestore callback. It keeps the chief's
checkpoint in `<dir>/chief/` (ordinary tf.train files: a `checkpoint` state file, plus
`ckpt-N.index` and `ckpt-N.data-*`), and non-chief workers write to `<dir>/workertemp_<i>/`,
which they delete after each save. The checkpoint stores the model, the optimizer, and
the epoch and batch reached, so a restart at any worker count resumes at the next step.
"""

import logging
import os

import tensorflow as tf
import tf_keras as keras

from gpuscale_trainer.errors import InputError

log = logging.getLogger(__name__)

CHIEF_SUBDIR = "chief"


def validate_checkpoint_dir(checkpoint_dir: str) -> int | None:
    """Check that the checkpoint in `checkpoint_dir`, if any, is readable; never modify it.

    Returns the step of the checkpoint found, or None for a fresh start. Raises InputError
    when the directory is unusable or the checkpoint is corrupt, because training on would
    either start over silently or fail halfway through restoring.
    """
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise InputError(f"checkpoint directory {checkpoint_dir!r} is a file; point it at a directory.")
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create checkpoint directory {checkpoint_dir!r}: {error}") from None
    if not os.access(checkpoint_dir, os.W_OK):
        raise InputError(f"checkpoint directory {checkpoint_dir!r} is not writable by uid {os.getuid()}.")

    chief_dir = os.path.join(checkpoint_dir, CHIEF_SUBDIR)
    if not os.path.exists(os.path.join(chief_dir, "checkpoint")):
        # NOTE: data files without a state file (a first save cut short) are ignored and
        # training starts from step 0, as BackupAndRestore itself would do.
        return None

    corrupt = (
        f"checkpoint in {chief_dir!r} is corrupt or unreadable; the trainer leaves it as it is. "
        "Restore it from a copy, or move the directory away to start training from step 0."
    )
    try:
        state = tf.train.get_checkpoint_state(chief_dir)
        if state is None or not state.model_checkpoint_path:
            raise InputError(f"{corrupt} (its 'checkpoint' state file names no checkpoint)")
        reader = tf.train.load_checkpoint(state.model_checkpoint_path)
        # Reading every tensor finds truncated or overwritten data files; the model is small.
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except InputError:
        raise
    except Exception as error:  # Parse errors, DataLossError, NotFoundError and friends.
        raise InputError(f"{corrupt} ({type(error).__name__}: {_first_line(error)})") from None
    return _saved_step(reader)


def _saved_step(reader) -> int | None:
    for name in reader.get_variable_to_shape_map():
        if name.startswith("model/optimizer/_iterations/"):
            return int(reader.get_tensor(name))
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class ElasticBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that also saves on request and after the last step, and never deletes.

    The checkpoint is kept after training finishes, so a worker restarted after the end
    finds every step done and goes straight to exporting the model.
    """

    def __init__(self, backup_dir: str, save_freq: int) -> None:
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self._saved_step: int | None = None
        self.restored_step = 0

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (tf.errors.OpError, ValueError, AssertionError) as error:
            raise InputError(
                f"cannot restore the checkpoint in {self.backup_dir!r} into this model "
                f"({type(error).__name__}: {_first_line(error)}). It may come from another model "
                "or --model; move the directory away to start over. It was left unchanged."
            ) from error
        self.restored_step = self._current_step()
        self._saved_step = self.restored_step

    def save_now(self) -> None:
        """Save a checkpoint at the current step unless one was saved there already."""
        if self._current_step() != self._saved_step:
            self._backup(epoch=self._current_epoch)
            log.info("checkpoint saved at step %d in %s", self._saved_step, self.backup_dir)

    def _backup(self, epoch, batch=0):
        # BackupAndRestore calls this every save_freq steps; save_now calls it too.
        super()._backup(epoch=epoch, batch=batch)
        self._saved_step = self._current_step()
        log.debug("checkpoint saved at step %d in %s", self._saved_step, self.backup_dir)

    def on_train_end(self, logs=None):
        self.save_now()
        super().on_train_end(logs)

    def _current_step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())
