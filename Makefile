# FleetDNS developer entry points. `make test` and `make demo` work on a fresh machine:
# they create the virtualenv and build or fetch the real components first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# 3 on 2 cores: most tests wait on real servers (2 workers kept the CPU 69% busy; 3 cut the suite 851 s -> 777 s)
PYTEST_WORKERS ?= 3

.PHONY: help venv tools test test-unit lint-imports rig demo bench bench-webhook bench-webhook-body bench-aggregator bench-failover bench-serving bench-prober bench-health-failover bench-views bench-selfservice bench-host-outage bench-load-failover bench-resolver-failover soak lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "FleetDNS needs Python >= 3.11, found " + sys.version.split()[0])'
	@echo "[venv] creating $(VENV) and installing fleetdns[dev]"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create the virtualenv with fleetdns and its test tools

tools: $(STAMP) ## install etcd, kubectl, CoreDNS, ExternalDNS, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, Helm, dnsperf and Unbound (apt), promtool and Prometheus, the OpenShift Route and Gateway API CRDs (pinned in hack/install_tools.py) into ./bin (cached)
	$(PY) hack/install_tools.py

test: lint-imports tools ## the layer contract, then every test against the real components (PYTEST_WORKERS=3 processes, a test file each at a time)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

soak: lint-imports tools ## the fault and bad-input tests at their full counts (FLEETDNS_SOAK=full); writes docs/reliability.md
	FLEETDNS_SOAK=full $(PY) -m pytest -n 2 --dist loadfile -m fault --timeout=7200 --reliability-report=docs/reliability.md $(PYTEST_ARGS)

test-unit: venv ## only the tests that need no real component
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

rig: tools ## the whole local federation, kept up; prints how to reach it (fleetdns status included); Ctrl-C stops all
	$(PY) -m rig

demo: tools ## the local multicluster federation demo
	$(PY) -m hack.demo

bench: bench-webhook bench-webhook-body bench-aggregator bench-failover bench-serving bench-prober bench-health-failover bench-views bench-selfservice bench-host-outage bench-load-failover bench-resolver-failover ## every benchmark; results and method go to docs/benchmarks-*.md

bench-webhook: tools ## webhook provider benchmarks (GET/POST /records, coredns vs webhook)
	$(PY) -m bench.webhook

bench-webhook-body: tools ## one large POST: time and peak RSS by body size, up to --max-request-bytes
	$(PY) -m bench.webhook_body

bench-aggregator: tools ## aggregator benchmark: 2,000 then 10,000 intents across 10 members (cold start, change p99, a member lost, RSS, GC pauses)
	$(PY) -m bench.aggregator

bench-failover: tools ## end-to-end failover time, FleetDNS's ExternalDNS setting vs its event mode
	$(PY) -m bench.failover

bench-health-failover: tools ## failover with HTTP checks: an app answers 500 -> every regional CoreDNS drops it (20 trials)
	$(PY) -m bench.health_failover $(BENCH_ARGS)

bench-serving: tools ## serving speed: dnsperf against the shipped Corefile vs CoreDNS's file plugin (BENCH_ARGS=--duration=30)
	$(PY) -m bench.serving $(BENCH_ARGS)

bench-views: tools ## client views: dnsperf over 3 views vs the file plugin, etcd keys per view, latency change -> new answer
	$(PY) -m bench.views $(BENCH_ARGS)

bench-selfservice: tools ## self-service: 2,000 annotated apps of mixed kinds across 3 members, no hand-written intent
	$(PY) -m bench.selfservice $(BENCH_ARGS)

bench-host-outage: tools ## host API outage of 5 s and 60 s, 5 in a row each -> first change in every regional CoreDNS, with and without the host relay
	$(PY) -m bench.host_outage $(BENCH_ARGS)

bench-load-failover: tools ## dnsperf on a regional CoreDNS, 100 apps steady vs failing over and back: latency percentiles, lost, SERVFAIL, empty answers
	$(PY) -m bench.load_failover $(BENCH_ARGS)

bench-resolver-failover: tools ## the failover a client sees behind Unbound (recordTTL 30 s and 5 s) beside the time at CoreDNS
	$(PY) -m bench.resolver_failover $(BENCH_ARGS)

bench-prober: tools ## prober cost: 2,000 apps x 3 clusters at periodSeconds 5 (1,200 checks/s), HTTP and HTTPS
	$(PY) -m bench.prober $(BENCH_ARGS)

lint: venv ## ruff, mypy and the layer contract
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy fleetdns webhook_provider serving aggregator prober rig
	$(VENV)/bin/lint-imports --no-cache

lint-imports: venv ## the layer contract (pyproject.toml [tool.importlinter], drawn in docs/design/layout.md): seconds, so make test runs it first
	$(VENV)/bin/lint-imports --no-cache

clean: ## remove the virtualenv and ./bin (the tool cache stays)
	rm -rf $(VENV) bin .pytest_cache
