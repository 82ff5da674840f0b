"""Entry point: `python -m gpuscale_trainer` and the `gpuscale-trainer` console script."""

import signal
import sys

from gpuscale_trainer import cli


def main() -> int:
    exit_code = cli.main()
    # A second SIGTERM during interpreter shutdown would otherwise kill the process with
    # -15 after it already chose its exit code, because Python restores the default
    # handler while it finalizes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
