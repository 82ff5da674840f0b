"""Turn a pod into a local process launch: argv, environment, working folder and host paths.

Everything here is pure except for the callables passed in (port allocation, ConfigMap and Secret
lookup), so the rewriting rules are unit-tested with plain dicts.

The rules, as the runner applies them to one container:
- the environment is built as the kubelet builds it (envFrom, then env in order, with `$(NAME)`
  references to earlier variables), on top of a small base (PATH, HOME, HOSTNAME);
- every `host:port` in TF_CONFIG's cluster maps to `127.0.0.1:<port>`, with one map per
  (namespace, job, generation) so that all workers of a group agree on it;
- a value that starts with a volume mount path (an env value or an argument) is rewritten to the
  host folder of that volume, `<state>/volumes/<namespace>/<job>/<volume>`. That folder outlives
  the pod as a ReadWriteMany volume would, so a new worker generation resumes from the same
  checkpoint;
- the termination message path (and any env value or argument equal to it) maps to a per-pod file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Labels the gpuscale operator puts on worker pods. The runner reads them only to group pods; a pod
# without them is its own group.
LABEL_JOB_NAME = "training.gpuscale.io/job-name"
LABEL_GENERATION = "training.gpuscale.io/generation"

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_GRACE_PERIOD_SECONDS = 30
PYTHON_NAMES = re.compile(r"^python(3(\.\d+)?)?$")
REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

AllocatePort = Callable[[], int]
# (kind, namespace, name) -> the object's data, or None when it does not exist. kind is
# "configMap" or "secret"; Secret values are returned already base64-decoded.
ResolveSource = Callable[[str, str, str], "Mapping[str, str] | None"]
GroupKey = tuple[str, str, str]


class LaunchError(ValueError):
    """The pod cannot be started as a local process; the message names the cause and the fix."""


@dataclass(frozen=True)
class HostPaths:
    """The layout of pods' files on this machine, all under one state folder."""

    state_dir: Path

    def volume_dir(self, namespace: str, job: str, volume: str) -> Path:
        return self.state_dir / "volumes" / namespace / job / volume

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.state_dir / "pods" / namespace / pod

    def log_file(self, namespace: str, pod: str) -> Path:
        return self.state_dir / "pod-logs" / namespace / f"{pod}.log"


@dataclass(frozen=True)
class LaunchPlan:
    """How to run one pod's container as a local process."""

    namespace: str
    pod: str
    container: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    termination_log: Path
    termination_message_policy: str
    grace_period_seconds: int
    # Folders to create before the process starts (working folder and mapped volumes).
    folders: list[Path]


# --- TF_CONFIG addresses ---

def cluster_addresses(tf_config: Mapping[str, Any]) -> list[str]:
    """Return every `host:port` of TF_CONFIG's cluster, task types in sorted order, then by index."""
    cluster = tf_config.get("cluster")
    if not isinstance(cluster, Mapping):
        return []
    addresses: list[str] = []
    for task_type in sorted(cluster):
        members = cluster[task_type]
        # A task type may be a list (index order) or a dict {index: address} (sparse form).
        if isinstance(members, Mapping):
            members = [members[key] for key in sorted(members, key=lambda key: int(key))]
        for address in members:
            if isinstance(address, str) and address not in addresses:
                addresses.append(address)
    return addresses


def extend_address_map(address_map: Mapping[str, str], addresses: Sequence[str],
                       allocate_port: AllocatePort) -> dict[str, str]:
    """Return `address_map` plus a new `127.0.0.1:<port>` for each address it does not map yet."""
    extended = dict(address_map)
    for address in addresses:
        if address not in extended:
            extended[address] = f"127.0.0.1:{allocate_port()}"
    return extended


def rewrite_tf_config(tf_config: Mapping[str, Any], address_map: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of TF_CONFIG with every cluster address replaced through `address_map`."""
    rewritten = json.loads(json.dumps(tf_config))
    cluster = rewritten.get("cluster")
    if not isinstance(cluster, dict):
        return rewritten
    for task_type, members in cluster.items():
        if isinstance(members, dict):
            cluster[task_type] = {key: address_map.get(value, value) for key, value in members.items()}
        elif isinstance(members, list):
            cluster[task_type] = [address_map.get(value, value) if isinstance(value, str) else value
                                  for value in members]
    return rewritten


def parse_tf_config(text: str | None) -> dict[str, Any] | None:
    """Parse TF_CONFIG, or return None when it is absent or not a JSON object.

    An invalid TF_CONFIG is passed to the process unchanged, so the trainer reports it the way
    it would in a real pod.
    """
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def group_key(pod: Mapping[str, Any]) -> GroupKey:
    """Return (namespace, job, generation): the pods that share one TF_CONFIG address map."""
    metadata = pod["metadata"]
    labels = metadata.get("labels") or {}
    job = labels.get(LABEL_JOB_NAME) or metadata["name"]
    return metadata["namespace"], job, labels.get(LABEL_GENERATION, "")


# --- Environment and references ---

def expand_references(text: str, variables: Mapping[str, str]) -> str:
    """Expand `$(NAME)` as the kubelet does: known names are replaced, unknown ones kept, `$$` is `$`."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables[name] if name in variables else match.group(0)
    return REFERENCE.sub(replace, text)


def field_value(pod: Mapping[str, Any], field_path: str) -> str:
    """Return the value of an env `fieldRef` (the downward API), or raise LaunchError."""
    metadata = pod["metadata"]
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": (pod.get("status") or {}).get("podIP"),
        "status.hostIP": (pod.get("status") or {}).get("hostIP"),
    }
    if field_path in simple:
        return simple[field_path] or ""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if match:
        return (metadata.get(match.group(1)) or {}).get(match.group(2), "")
    raise LaunchError(f"env fieldRef {field_path!r} is not supported by the dev pod runner; "
                      "use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], "
                      "metadata.annotations['KEY'], spec.nodeName, status.podIP or status.hostIP")


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any],
                  resolve_source: ResolveSource) -> dict[str, str]:
    """Build the container's environment from envFrom and env, in the kubelet's order."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}

    for source in container.get("envFrom") or []:
        kind = "configMap" if "configMapRef" in source else "secret"
        reference = source.get("configMapRef") or source.get("secretRef") or {}
        data = resolve_source(kind, namespace, reference.get("name", ""))
        if data is None:
            if reference.get("optional"):
                continue
            raise LaunchError(f"envFrom {kind} {namespace}/{reference.get('name')} not found; "
                              "create it or mark the reference optional")
        prefix = source.get("prefix", "")
        env.update({prefix + key: value for key, value in data.items()})

    for variable in container.get("env") or []:
        name = variable["name"]
        if "value" in variable or "valueFrom" not in variable:
            env[name] = expand_references(variable.get("value", ""), env)
            continue
        value_from = variable["valueFrom"]
        if "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in value_from or "secretKeyRef" in value_from:
            kind = "configMap" if "configMapKeyRef" in value_from else "secret"
            reference = value_from.get("configMapKeyRef") or value_from.get("secretKeyRef")
            data = resolve_source(kind, namespace, reference["name"]) or {}
            if reference["key"] in data:
                env[name] = data[reference["key"]]
            elif not reference.get("optional"):
                raise LaunchError(f"env {name}: key {reference['key']!r} of {kind} "
                                  f"{namespace}/{reference['name']} not found; create it or mark it optional")
        else:
            # NOTE: resourceFieldRef is not supported; such variables are left unset.
            continue
    return env


# --- Paths ---

def map_path(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """Rewrite `value` when it is a mount path or lies under one; otherwise return it unchanged.

    `mounts` pairs a container path with its host folder, longest container path first.
    """
    for mount_path, host_dir in mounts:
        root = mount_path.rstrip("/") or "/"
        if value == root:
            return str(host_dir)
        if value.startswith(root + "/") and root != "/":
            return str(host_dir / value[len(root) + 1:])
        # An option in one argument, such as --checkpoint-dir=/checkpoints/x.
        option, separator, rest = value.partition("=")
        if separator and option.startswith("-") and (rest == root or rest.startswith(root + "/")):
            return f"{option}={map_path(rest, mounts)}"
    return value


def volume_mounts(pod: Mapping[str, Any], container: Mapping[str, Any], paths: HostPaths) -> list[tuple[str, Path]]:
    """Return (mount path, host folder) for every volume mount, longest mount path first."""
    namespace, job, _ = group_key(pod)
    mounts = []
    for mount in container.get("volumeMounts") or []:
        host_dir = paths.volume_dir(namespace, job, mount["name"])
        if mount.get("subPath"):
            host_dir = host_dir / mount["subPath"]
        mounts.append((mount["mountPath"], host_dir))
    return sorted(mounts, key=lambda pair: len(pair[0]), reverse=True)


def map_command(argv: Sequence[str], python: str) -> list[str]:
    """Replace a leading `python` (any python3.X, with or without a folder) with `python`."""
    if argv and PYTHON_NAMES.match(os.path.basename(argv[0])):
        return [python, *argv[1:]]
    return list(argv)


# --- The launch plan ---

def find_container(pod: Mapping[str, Any], image_prefix: str) -> dict[str, Any] | None:
    """Return the first container whose image starts with `image_prefix`, or None."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if str(container.get("image", "")).startswith(image_prefix):
            return container
    return None


def build_launch_plan(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    paths: HostPaths,
    address_map: Mapping[str, str],
    resolve_source: ResolveSource,
    python: str,
    default_command: Sequence[str],
    base_env: Mapping[str, str],
) -> LaunchPlan:
    """Build the local launch of `container`; `address_map` must cover the TF_CONFIG addresses."""
    metadata = pod["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    pod_dir = paths.pod_dir(namespace, name)
    workdir = pod_dir / "workdir"
    termination_log = pod_dir / "termination-log"
    termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    mounts = volume_mounts(pod, container, paths)

    # 1. The environment, as the kubelet would give it, then rewritten for this machine.
    env = {**base_env, "HOSTNAME": name, "HOME": str(workdir)}
    env.update(container_env(pod, container, resolve_source))
    for key, value in env.items():
        env[key] = str(termination_log) if value == termination_path else map_path(value, mounts)
    tf_config = parse_tf_config(env.get("TF_CONFIG"))
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(rewrite_tf_config(tf_config, address_map), separators=(",", ":"))

    # 2. The command line: image default, `$(NAME)` expansion, python, and mapped paths.
    command = list(container.get("command") or default_command)
    if not command:
        raise LaunchError(f"container {container.get('name')!r} has no command and no default command is set; "
                          "start the runner with --default-command")
    argv = [expand_references(part, env) for part in command + list(container.get("args") or [])]
    argv = map_command(argv, python)
    argv = [argv[0]] + [str(termination_log) if part == termination_path else map_path(part, mounts)
                        for part in argv[1:]]

    working_dir = container.get("workingDir")
    cwd = Path(map_path(working_dir, mounts)) if working_dir and map_path(working_dir, mounts) != working_dir else workdir
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return LaunchPlan(
        namespace=namespace, pod=name, container=container["name"], argv=argv, env=env, cwd=cwd,
        log_path=paths.log_file(namespace, name), termination_log=termination_log,
        termination_message_policy=container.get("terminationMessagePolicy") or "File",
        grace_period_seconds=DEFAULT_GRACE_PERIOD_SECONDS if grace is None else int(grace),
        folders=[workdir, cwd, *(host_dir for _, host_dir in mounts)],
    )
