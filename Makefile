# gpuscale developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KUBECONFIG_LOCAL := $(CURDIR)/.local-cluster/kubeconfig
# The pinned kubectl from `make tools` when it is built, else the one on PATH.
KUBECTL = $(shell k=$$(tools/build.sh --print-bin-dirs | cut -d: -f1)/kubectl; [ -x "$$k" ] && echo "$$k" || echo kubectl)

.PHONY: help venv tools crds crds-check install uninstall run deploy cluster-up cluster-down \
	test test-unit test-e2e demo e2e-kind bench-scheduler bench-operator bench-rescale clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[trainer,test]"
	@touch $@

venv: $(VENV)/.installed ## Create .venv with the operator, the trainer and the test tools

tools: ## Build the control-plane binaries into ~/.cache/gpuscale (only what is missing)
	tools/build.sh

crds: venv ## Regenerate crds/ from the pydantic models
	$(PY) -m gpuscale.api.crd --out crds/

crds-check: venv ## Fail if crds/ is stale
	$(PY) -m gpuscale.api.crd --check --out crds/

cluster-up: venv tools ## Start the local control plane with fake GPU nodes (prints the KUBECONFIG line)
	$(PY) -m gpuscale.cluster.launcher up

cluster-down: venv ## Stop the local control plane
	$(PY) -m gpuscale.cluster.launcher down

install: ## Apply the CRDs to the cluster in KUBECONFIG
	$(KUBECTL) apply --server-side -f crds/
	$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/

uninstall: ## Remove the CRDs (and with them every TrainingJob and CostPolicy)
	$(KUBECTL) delete --ignore-not-found -f crds/

run: venv install ## Run the operator locally against the cluster in KUBECONFIG
	$(VENV)/bin/kopf run --standalone --all-namespaces -m gpuscale.controller.handlers

deploy: install ## Apply manifests/operator (namespace, RBAC, Deployment) for in-cluster use
	$(KUBECTL) apply -f manifests/operator/

test: venv tools ## Run every test: unit, training and e2e on the local control plane
	$(PY) -m pytest -ra

test-unit: venv ## Run the unit tests only (no cluster, no training)
	$(PY) -m pytest -ra -m "not e2e and not training"

test-e2e: venv tools ## Run the e2e tests only
	$(PY) -m pytest -ra -m e2e

demo: venv tools ## Set everything up and train the digits TrainingJob for real
	$(PY) -m gpuscale_podrunner.demo

e2e-kind: ## Run the e2e suite against a kind cluster (needs Docker; see README)
	tools/kind-e2e.sh

bench-scheduler: venv ## Compare scheduling policies on the Pollux traces
	$(PY) -m bench.scheduler

bench-operator: venv tools ## Measure job start-up latency against a plain client script
	$(PY) -m bench.operator

bench-rescale: venv ## Measure the trainer's rescale overhead and throughput
	$(PY) -m bench.rescale

clean: cluster-down ## Remove the venv and local cluster state (the binary cache stays)
	rm -rf $(VENV) .local-cluster
