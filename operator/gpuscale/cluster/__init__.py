"""A local Kubernetes control plane with fake GPU nodes, for tests and the demo.

It runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as processes on
127.0.0.1. There is no kubelet: containers do not run, and kwok moves pods through their phases.
"""
