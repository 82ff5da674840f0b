"""A development-only pod runner: runs trainer pods bound to kwok's fake nodes as local processes.

It exists only because no kubelet runs on the local control plane: kwok fakes the nodes and marks
pods Running, but it starts no containers. The runner takes the kubelet's place for one kind of pod
(those whose container image starts with the trainer image prefix). For each such pod it starts the
container's command as a local process with the pod's environment, maps the TF_CONFIG worker
addresses to 127.0.0.1 ports and the volume mounts to host folders, sends SIGTERM when the pod is
deleted, and writes the exit code and termination message back to the pod's status.

It is no part of the operator, which never imports it, and a real cluster never runs it.
Start it with `python -m gpuscale_podrunner --kubeconfig PATH`.
"""
