# mlflow-secrets-auth. `make test` and `make demo` work on a fresh machine:
# they create .venv, install what they need and start their own servers.
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Go may not be on PATH in a non-login shell; it is installed in /usr/local/go here.
export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS := -mod=readonly
DEPS := $(VENV)/.deps-installed

.PHONY: build wheel install system-deps vault-server lint test test-go test-py bench demo clean

build: ## the shared library and cffi module, in place (python/mlflow_secrets_auth/)
	./build.sh

$(DEPS): tests/requirements.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r tests/requirements.txt
	touch $@

wheel: $(DEPS) ## a platform wheel with the library inside, in dist/
	rm -rf dist
	$(PIP) wheel . -w dist --no-deps -q

install: wheel
	$(PIP) install -q --no-deps --force-reinstall dist/*.whl

system-deps: ## nginx (Debian) for the bearer-token proxy in the tests
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

vault-server: $(DEPS) ## build the real Vault test server (cached outside the repo)
	$(PY) -c "import sys; sys.path.insert(0, 'tests'); import harness; print(harness.ensure_vault_server_binary())"

lint: $(DEPS)
	go vet ./...
	@test -z "$$(gofmt -l go tests/vaultserver)" || { gofmt -l go tests/vaultserver; echo "gofmt needed"; exit 1; }
	$(VENV)/bin/ruff check python tests examples build_backend bench setup.py
	$(VENV)/bin/mypy

test-go:
	go test -race -count=1 ./...

test-py: install system-deps vault-server
	$(PY) -m pytest -q -p no:cacheprovider tests

test: lint test-go test-py ## everything: Go (-race), C API, Python against real servers

bench: install vault-server ## hot-path and cold-start numbers (not part of `make test`)
	go test -run '^$$' -bench . -benchmem ./go/...
	$(PY) bench/bench.py

demo: install vault-server ## Vault + MLflow on loopback, an unmodified script logging a run
	$(PY) examples/demo.py

clean:
	rm -rf dist build *.egg-info python/*.egg-info $(VENV)
	rm -f python/mlflow_secrets_auth/libmlflow_secrets_auth.so python/mlflow_secrets_auth/_ffi.py
