# Two commands matter: `make run` (the whole stack, on a fresh machine) and `make test` (the suite).
PYTHON ?= python3
# Overridable so a test (or a second checkout) can reuse an existing environment: make run VENV=/path
VENV   ?= .venv
BIN    := $(VENV)/bin
# apt-get needs root; CI runs as root, a developer's machine may need sudo.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export FLASK_APP := app:create_app

.PHONY: run test chaos install install-test translations assets chromium prometheus nginx strace screenshots-ops migrate bench bench-smoke bench-export clean

run: install translations assets migrate  ## Install everything, migrate, start web + worker + Redis + SMTP sink
	$(BIN)/python -m scripts.dev

test: install-test translations assets chromium prometheus nginx strace  ## Install what the tests need and run the whole suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long chaos soak (tests/faults/test_chaos.py): CHAOS_SECONDS of faults per database, SQLite then
# PostgreSQL (10 minutes in all); `make test` runs it for 60 s each. CHAOS_SEED=<n> replays a run's choices.
chaos: install-test assets
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(BIN)/python -m pytest tests/faults/test_chaos.py -m chaos -s $(PYTEST_ARGS)

install: $(VENV)/.runtime
install-test: $(VENV)/.test

$(VENV)/.runtime: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Microblog needs Python 3.11+ ($(PYTHON) is older): make PYTHON=python3.12 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Compiled catalogues (.mo) are built here from the committed .po files, never committed.
translations: install
	$(BIN)/pybabel compile --statistics -d app/translations

$(VENV)/.test: requirements-test.txt $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# socket.io's browser client from npm, served by Flask from app/static/vendor (never a CDN).
# axe-core (npm too) stays in node_modules: only the accessibility tests inject it into pages.
assets: app/static/vendor/socket.io.min.js node_modules/axe-core/axe.min.js
app/static/vendor/socket.io.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p app/static/vendor
	cp node_modules/socket.io-client/dist/socket.io.min.js $@
node_modules/axe-core/axe.min.js: app/static/vendor/socket.io.min.js
	test -f $@ || npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests drive Debian's Chromium through Playwright; no browser is ever downloaded.
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@/usr/bin/chromium --version

# Operations tests scrape /metrics with Debian's Prometheus and check deploy/alerts.yml with promtool.
prometheus:
	@command -v promtool >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null; }
	@promtool --version | head -1

# Deployment tests: Debian's nginx run unprivileged (tests/test_nginx.py, deploy/nginx.conf), and a
# TLS-only redis-server with an openssl-made certificate (tests/test_heroku.py: rediss://).
nginx:
	@test -x /usr/sbin/nginx -a -x /usr/bin/openssl -a -x /usr/bin/redis-server || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq nginx openssl redis-server >/dev/null; }
	@/usr/sbin/nginx -v

# tests/test_worker_app.py follows a real worker and its work horse with strace (what each one opens).
strace:
	@command -v strace >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq strace >/dev/null; }
	@strace -V | head -1

migrate: install
	$(BIN)/flask db upgrade

# README pictures of /admin/rq and Prometheus' graph of microblog_tasks_total (headless Chromium).
screenshots-ops: install-test assets chromium prometheus
	$(BIN)/python -m scripts.ops_screenshots

# Every benchmark of issue 10, ≥ 3 runs each: RESULT lines and bench/results/*.json (see bench/README.md).
bench: install-test assets
	ulimit -n 65536 2>/dev/null || true; $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-smoke: install-test assets  ## small sizes, one run each (what `make test` runs)
	$(BIN)/python -m bench.run --smoke --runs 1

bench-export: install-test assets  ## the detailed export benchmark (per-event timelines)
	$(BIN)/python -m bench.export_bench

clean:
	rm -rf $(VENV) node_modules app/static/vendor var .pytest_cache
