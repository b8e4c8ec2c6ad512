# dgxsim: emulated NVIDIA DGX A100 nodes for Kubernetes.
# `make help` lists the targets; each target's `## name: text` line documents it.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE ?= .state/demo
DEMO_KUBECTL = .tools/bin/kubectl --kubeconfig $(STATE)/kubeconfig
PYTEST_ARGS ?=

## help: list targets (default)
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: /\t/' | expand -t 20

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dgxsim needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## dev: create the virtual environment and install dgxsim with its dev extras
.PHONY: dev
dev: $(BIN)/.installed

## tools: build (or copy from cache) kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm into .tools/bin
.PHONY: tools
tools:
	PYTHONPATH=simnode $(PYTHON) -m localkube.toolchain

REAL_NODE_PACKAGES := runc containernetworking-plugins debootstrap iproute2 util-linux gcc libc6-dev

## real-node-deps: as root, install what real nodes need (distribution packages, the kubelet and containerd 2); a no-op for other users
.PHONY: real-node-deps
real-node-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "real-node-deps: not root, real nodes are not set up (their tests report skipped)"; exit 0; fi; \
	missing=$$(for p in $(REAL_NODE_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	PYTHONPATH=simnode $(PYTHON) -m localkube.toolchain --real-node

PROTOS := plugin/kubeletapi/v1beta1/api.proto plugin/kubeletapi/podresources/v1/api.proto \
	plugin/kubeletapi/dra/v1/api.proto plugin/kubeletapi/pluginregistration/v1/api.proto
PROTOC := PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I plugin

## proto: regenerate the kubelet APIs' Python code (and type stubs) from their .proto files
.PHONY: proto
proto: dev
	$(PROTOC) --python_out=plugin --mypy_out=plugin --grpc_python_out=plugin --mypy_grpc_out=plugin $(PROTOS)

## verify-proto: fail if the committed generated code differs from what `make proto` writes
.PHONY: verify-proto
verify-proto: dev
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PROTOC) --python_out=$$tmp --mypy_out=$$tmp --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) >/dev/null; \
	for proto in $(PROTOS); do \
	  dir=$$(dirname $${proto#plugin/}); \
	  for f in api_pb2.py api_pb2.pyi api_pb2_grpc.py api_pb2_grpc.pyi; do \
	    diff -u plugin/$$dir/$$f $$tmp/$$dir/$$f || { echo "generated $$dir/$$f is stale: run make proto"; exit 1; }; \
	  done; echo "generated code matches $$proto"; \
	done

## fmt: format the code with ruff
.PHONY: fmt
fmt: dev
	$(BIN)/ruff format simnode plugin operator tests bench
	$(BIN)/ruff check --fix simnode plugin operator tests bench

## lint: ruff check
.PHONY: lint
lint: dev
	$(BIN)/ruff check simnode plugin operator tests bench

## typecheck: mypy --strict over every package
.PHONY: typecheck
typecheck: dev
	$(BIN)/mypy -p gpumodel -p kubeletapi -p kubewire -p localkube -p dgxnode -p deviceplugin -p draplugin -p migoperator -p dgxsim

## imports: import-linter contracts (domain model is a leaf, components are independent)
.PHONY: imports
imports: dev
	$(BIN)/lint-imports

## verify: lint, typecheck, import contracts and generated code
.PHONY: verify
verify: lint typecheck imports verify-proto

## test: install everything (as root also what real nodes need), run the gates, then unit, integration, cluster and real-node tests
.PHONY: test
test: dev tools real-node-deps verify
	$(BIN)/pytest $(PYTEST_ARGS)

## demo: the embedded default: control plane, 2 DGX nodes and the operator; GPU and MIG Jobs, then the white paper's mixed-workload node
.PHONY: demo
demo: dev tools
	$(BIN)/dgxsim up --state-dir $(STATE) --nodes 2 --time-scale 60
	$(DEMO_KUBECTL) wait --for=create serviceaccount/default --timeout=60s
	$(DEMO_KUBECTL) delete -f examples/jobs/ -f examples/dgx-a100-mixed-workloads/ --ignore-not-found --wait
	$(DEMO_KUBECTL) delete events --all-namespaces --field-selector reason=MigLayoutDecided --ignore-not-found >/dev/null
	@echo "== 1. static MIG: dgx-1 relabelled nvidia.com/mig.config=all-1g.5gb, as with NVIDIA's mig-manager"
	$(DEMO_KUBECTL) label node dgx-0 dgxsim.io/mig-policy- nvidia.com/mig.config=all-disabled --overwrite
	$(DEMO_KUBECTL) label node dgx-1 nvidia.com/mig.config=all-1g.5gb --overwrite
	$(DEMO_KUBECTL) wait node/dgx-0 node/dgx-1 --for=jsonpath='{.metadata.labels.nvidia\.com/mig\.config\.state}'=success --timeout=120s
	$(DEMO_KUBECTL) get nodes -L nvidia.com/mig.config,nvidia.com/mig.config.state,nvidia.com/gpu.count,nvidia.com/mig-1g.5gb.count
	$(DEMO_KUBECTL) apply -f examples/jobs/
	$(DEMO_KUBECTL) wait --for=condition=complete job/train-2gpu job/infer-mig --timeout=300s
	$(DEMO_KUBECTL) get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,DEVICES:.metadata.annotations.dgxsim\.io/devices'
	@echo "== 2. the white paper's mixed-workload node: dgx-0 partitioned on demand by the operator"
	$(DEMO_KUBECTL) label node dgx-0 dgxsim.io/mig-policy=dynamic --overwrite
	$(DEMO_KUBECTL) apply -f examples/dgx-a100-mixed-workloads/
	$(DEMO_KUBECTL) wait --for=jsonpath='{.status.phase}'=Succeeded dgxjob/bert-pretrain dgxjob/hpc-dgemm --timeout=300s
	$(DEMO_KUBECTL) wait --for=condition=complete job/bert-inference --timeout=300s
	$(DEMO_KUBECTL) get events --field-selector reason=MigLayoutDecided -o custom-columns='NODE:.involvedObject.name,DECISION:.message'
	$(BIN)/dgxsim jobs --state-dir $(STATE)
	@echo "The cluster keeps running (KUBECONFIG=$(STATE)/kubeconfig); stop it with: make demo-down"

## demo-down: stop the demo cluster (its state stays in $(STATE))
.PHONY: demo-down
demo-down: dev
	$(BIN)/dgxsim down --state-dir $(STATE)

## bench: run the benchmarks in bench/ (figures and ratios, never pass/fail)
.PHONY: bench
bench: dev
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

SCALE_NODES ?= 20
SCALE_ARGS ?=

## bench-scale: KWOK and dgxsim nodes side by side, the same pod burst (SCALE_NODES="140 500 1000")
.PHONY: bench-scale
bench-scale: dev tools
	PYTHONPATH=simnode $(PYTHON) -m localkube.toolchain kwok
	$(BIN)/python bench/scale.py --nodes $(SCALE_NODES) $(SCALE_ARGS)

## clean: remove build outputs and caches (keeps .tools and .venv)
.PHONY: clean
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------- kind mode
# For users with Docker and kind: one kind worker per simulated DGX node, the
# chart's DaemonSet registering the device plugin with each worker's kubelet.

DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= dgxsim
IMAGE_REPO ?= dgxsim
IMAGE_TAG ?= dev
IMAGE := $(IMAGE_REPO):$(IMAGE_TAG)
RELEASE ?= dgxsim
# Any namespace works: the chart tells its pods theirs (POD_NAMESPACE).
RELEASE_NAMESPACE ?= dgxsim-system
HELM ?= $(or $(shell command -v helm 2>/dev/null),.tools/bin/helm)
KUBECTL ?= $(or $(shell command -v kubectl 2>/dev/null),.tools/bin/kubectl)
KIND_CONTEXT := kind-$(KIND_CLUSTER)
DEMO_NODE := $(KIND_CLUSTER)-worker

# $(call need,COMMAND,HINT): fail with a clear message when COMMAND is missing.
define need
	@command -v $(1) >/dev/null 2>&1 || { echo "make $@: '$(1)' not found. $(2)" >&2; exit 1; }
endef
NEED_DOCKER = $(call need,$(DOCKER),Install Docker: https://docs.docker.com/engine/install/ (without a container engine use the embedded default: make demo))
NEED_KIND = $(call need,$(KIND),Install kind: https://kind.sigs.k8s.io/docs/user/quick-start/ (without Docker use the embedded default: make demo))
NEED_HELM = $(call need,$(HELM),Install helm or run: make tools)
NEED_KUBECTL = $(call need,$(KUBECTL),Install kubectl or run: make tools)
define NEED_ENGINE
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make $@: the Docker engine is not reachable ($(DOCKER) info failed): start Docker, or use the embedded default: make demo" >&2; exit 1; }
endef
define NEED_CLUSTER
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || { echo "make $@: no kind cluster '$(KIND_CLUSTER)': run make kind-up first" >&2; exit 1; }
endef

## kind-up: create the kind cluster dgxsim from kind/cluster.yaml (1 control plane, 2 DGX workers)
.PHONY: kind-up
kind-up:
	$(NEED_DOCKER)
	$(NEED_KIND)
	$(NEED_ENGINE)
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) already exists"; \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config kind/cluster.yaml --wait 120s; \
	fi

## image: build the one image every component uses (dgxsim:dev, entrypoint dgxsim)
.PHONY: image
image:
	$(NEED_DOCKER)
	$(NEED_ENGINE)
	$(DOCKER) build -t $(IMAGE) .

## kind-load: copy the image into every node of the kind cluster
.PHONY: kind-load
kind-load:
	$(NEED_DOCKER)
	$(NEED_KIND)
	$(NEED_ENGINE)
	$(NEED_CLUSTER)
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)

## deploy: helm upgrade --install the chart into dgxsim-system on the kind cluster and wait
.PHONY: deploy
deploy:
	$(NEED_KIND)
	$(NEED_HELM)
	$(NEED_CLUSTER)
	$(HELM) upgrade --install $(RELEASE) charts/dgxsim --kube-context $(KIND_CONTEXT) \
	  --namespace $(RELEASE_NAMESPACE) --create-namespace \
	  --set image.repository=$(IMAGE_REPO) --set image.tag=$(IMAGE_TAG) --wait --timeout 5m

## kind-demo: kind-up, image, kind-load, deploy, then helm test, a GPU Job and a MIG reconfiguration
.PHONY: kind-demo
kind-demo: kind-up image kind-load deploy
	$(NEED_KUBECTL)
	$(HELM) test $(RELEASE) --kube-context $(KIND_CONTEXT) --namespace $(RELEASE_NAMESPACE)
	$(KUBECTL) --context $(KIND_CONTEXT) apply -f kind/gpu-job.yaml
	$(KUBECTL) --context $(KIND_CONTEXT) wait --for=condition=complete job/gpu-job --timeout=300s
	$(KUBECTL) --context $(KIND_CONTEXT) logs job/gpu-job --tail=3
	$(KUBECTL) --context $(KIND_CONTEXT) label node $(DEMO_NODE) nvidia.com/mig.config=all-1g.5gb --overwrite
	$(KUBECTL) --context $(KIND_CONTEXT) wait node/$(DEMO_NODE) \
	  --for=jsonpath='{.metadata.labels.nvidia\.com/mig\.config\.state}'=success --timeout=300s
	$(KUBECTL) --context $(KIND_CONTEXT) get node $(DEMO_NODE) \
	  -o jsonpath='{.status.allocatable.nvidia\.com/mig-1g\.5gb}{" MIG 1g.5gb slices on $(DEMO_NODE)\n"}'

## kind-down: delete the kind cluster dgxsim
.PHONY: kind-down
kind-down:
	$(NEED_KIND)
	$(KIND) delete cluster --name $(KIND_CLUSTER)
