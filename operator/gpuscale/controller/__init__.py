"""The kopf operator: thin handlers that read the cluster, call the planners and apply the result."""
