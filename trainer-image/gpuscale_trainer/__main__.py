"""Entry point: `python -m gpuscale_trainer` and the `gpuscale-trainer` console script."""

import logging
import os
import signal
import sys

from gpuscale_trainer import cli
from gpuscale_trainer.errors import EXIT_PREEMPTED


def main() -> int:
    exit_code = cli.main()
    # A second SIGTERM during interpreter shutdown would otherwise kill the process with
    # -15 after it already chose its exit code, because Python restores the default
    # handler while it finalizes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if exit_code == EXIT_PREEMPTED:
        # The checkpoint and the termination message are written. Skipping TensorFlow's
        # teardown (gRPC server, coordination-service shutdown) saves seconds of the grace
        # period, and the peers stop at the same step, so they need nothing more from us.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
