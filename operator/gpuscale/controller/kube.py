"""Cluster I/O for the controller: the few API calls it makes, on plain dicts.

Responses are decoded from JSON directly (`_preload_content=False`) so that pods and jobs reach the
planners as the dicts the API server sent, in camelCase, without the client's model classes.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from gpuscale.api.models import GROUP as API_GROUP
from gpuscale.api.models import COST_POLICY_PLURAL, TRAINING_JOB_PLURAL
from gpuscale.api.models import VERSION as API_VERSION_NAME


EVENT_SOURCE = "gpuscale-operator"


def _call_ignoring(status: int, call, *args, **kwargs) -> bool:
    """Make an API call; return False when it fails with `status` (404 gone, 409 exists), else True."""
    try:
        call(*args, **kwargs)
    except ApiException as error:
        if error.status == status:
            return False
        raise
    return True


class KubeApi:
    """The API calls that reconciling a TrainingJob needs."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _decode(response) -> Any:
        return json.loads(response.data)

    def get_job(self, namespace: str, name: str) -> dict | None:
        try:
            return self._decode(self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION_NAME, namespace, TRAINING_JOB_PLURAL, name, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_jobs(self) -> list[dict]:
        return self._decode(self.custom.list_cluster_custom_object(
            API_GROUP, API_VERSION_NAME, TRAINING_JOB_PLURAL, _preload_content=False))["items"]

    def patch_job_status(self, namespace: str, name: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION_NAME, namespace, TRAINING_JOB_PLURAL, name, {"status": status})

    def delete_job(self, namespace: str, name: str) -> None:
        _call_ignoring(404, self.custom.delete_namespaced_custom_object,
                       API_GROUP, API_VERSION_NAME, namespace, TRAINING_JOB_PLURAL, name,
                       body=client.V1DeleteOptions(propagation_policy="Background"))

    def list_pods(self, namespace: str, selector: str) -> list[dict]:
        return self._decode(self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False))["items"]

    def list_all_pods(self, selector: str) -> list[dict]:
        return self._decode(self.core.list_pod_for_all_namespaces(
            label_selector=selector, _preload_content=False))["items"]

    def create_pod(self, pod: dict) -> bool:
        """Create a pod; return False when one of that name already exists."""
        return _call_ignoring(409, self.core.create_namespaced_pod, pod["metadata"]["namespace"], pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        _call_ignoring(404, self.core.delete_namespaced_pod, name, namespace)

    def service_exists(self, namespace: str, name: str) -> bool:
        return _call_ignoring(404, self.core.read_namespaced_service, name, namespace, _preload_content=False)

    def create_service(self, service: dict) -> None:
        _call_ignoring(409, self.core.create_namespaced_service, service["metadata"]["namespace"], service)

    def delete_service(self, namespace: str, name: str) -> None:
        _call_ignoring(404, self.core.delete_namespaced_service, name, namespace)

    def patch_cost_policy_status(self, name: str, status: dict) -> None:
        self.custom.patch_cluster_custom_object_status(
            API_GROUP, API_VERSION_NAME, COST_POLICY_PLURAL, name, {"status": status})

    def post_event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Create a core/v1 Event about `obj`, as `kubectl describe` and `kubectl get events` show them."""
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") or "default"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": metadata["name"],
                "namespace": metadata.get("namespace"), "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            # The API server rejects Event messages over 1 KiB.
            "message": message[:1024],
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.core.create_namespaced_event(namespace, event)

    def list_nodes(self) -> list[dict]:
        return self._decode(self.core.list_node(_preload_content=False))["items"]
