"""Command line of the dev pod runner: `python -m gpuscale_podrunner --kubeconfig PATH`."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config

from gpuscale_podrunner.runner import DEFAULT_COMMAND, DEFAULT_IMAGE_PREFIX, PodRunner, RunnerConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpuscale_podrunner",
        description="Run trainer pods bound to kwok's fake nodes as local processes (development only: "
        "it stands in for the kubelet, which the local control plane does not have).",
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ".local-cluster/kubeconfig"),
                        help="kubeconfig of the cluster (default: $KUBECONFIG, else .local-cluster/kubeconfig)")
    parser.add_argument("--state-dir", type=Path, default=Path(".local-cluster"),
                        help="folder for pod logs (pod-logs/), working folders (pods/) and volumes (volumes/) "
                        "(default: .local-cluster)")
    parser.add_argument("--image-prefix", default=DEFAULT_IMAGE_PREFIX,
                        help=f"adopt pods whose container image starts with this (default: {DEFAULT_IMAGE_PREFIX})")
    parser.add_argument("--namespace", default=None, help="watch only this namespace (default: all namespaces)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that replaces a container command `python` (default: this one)")
    parser.add_argument("--default-command", default=shlex.join(DEFAULT_COMMAND),
                        help="command for containers that set none, standing in for the image's entrypoint "
                        f"(default: {shlex.join(DEFAULT_COMMAND)!r})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not Path(args.kubeconfig).is_file():
        print(f"error: kubeconfig {args.kubeconfig} not found; start the cluster with `make cluster-up` "
              "or pass --kubeconfig", file=sys.stderr)
        return 2

    config = RunnerConfig(
        state_dir=args.state_dir.resolve(), image_prefix=args.image_prefix, namespace=args.namespace,
        python=args.python, default_command=tuple(shlex.split(args.default_command)),
    )
    runner = PodRunner(client.CoreV1Api(kube_config.new_client_from_config(args.kubeconfig)),
                       client.CoreV1Api(kube_config.new_client_from_config(args.kubeconfig)), config)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logging.getLogger("gpuscale_podrunner").info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    runner.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
