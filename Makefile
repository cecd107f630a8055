# sqlml developer interface. Every target installs what it needs on a fresh Debian 12.
#   make test    the whole suite (MariaDB 10.11 always; MariaDB 11.8 and Oracle MySQL 9.7 when they can be fetched),
#                after make lint
#   make lint    ruff over every .py (pyproject's rules), then native/ compiled with -Wall -Wextra -Werror
#   make demo    the seed queries on a private server with sqlml and the local services
#   make up      a private server on 127.0.0.1:3307 (root, no password) until `make down`
#                (SERVER=mariadb|mariadb118|mysql for make up and make demo; default mariadb)
#   make bench   the benchmarks: a printed table and JSON under bench/results/
#                (BENCH="crossing batching local_service" picks some)
#   make fuzz    the SQL-level fuzz at full size: 100,000 calls per server
#                (SQLML_FUZZ_CALLS, SQLML_FUZZ_SEED; `make test` runs a short pass)
SHELL := /bin/bash
PYTHON_BASE ?= /usr/bin/python3.11
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
SERVER ?= mariadb
PORT ?= 3307
RUN_DIR ?= $(CURDIR)/.run
# libcurl4-openssl-dev, libssl-dev: sqlml._curl_link (native/curl_link.c) is built against the system
# libcurl, whose OpenSSL is the one the server loads.
APT_PACKAGES := mariadb-server mariadb-client python3.11 python3.11-venv libpython3.11-dev cmake gcc make \
  libcurl4-openssl-dev libssl-dev
# The venv's Python packages are pyproject.toml's: build backend, dependencies and every extra.
PY_DEPS := $(PYTHON_BASE) tools/py_deps.py

.PHONY: deps venv build lint test demo up down bench fuzz clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The stamp holds the package list read from pyproject.toml: a venv made before a package
# was added there gets it on the next `make build` instead of failing at import.
$(VENV)/.deps-ok: Makefile pyproject.toml tools/py_deps.py | deps
	@want="$$($(PY_DEPS))" || exit 1; \
	if [ -f $@ ] && [ "$$(cat $@)" = "$$want" ]; then touch $@; exit 0; fi; \
	$(PYTHON_BASE) -m venv $(VENV) && \
	{ $(VENV)/bin/pip install -q --disable-pip-version-check -r <(echo "$$want") 2>&1 | grep -v "is ignored" || true; } && \
	$(PY) tools/py_deps.py --check && $(PY) -c "import boto3, pymysql, sqlglot" && \
	echo "$$want" > $@

venv: deps $(VENV)/.deps-ok

# A failed compile must stop here: the servers would otherwise load the last good library.
build: venv
	@mkdir -p .run
	@$(VENV)/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps . > .run/build.log 2>&1 \
	  || { cat .run/build.log; echo "build failed"; exit 1; }
	@grep -v "is ignored" .run/build.log || true
	$(PY) -c "import sqlml.installer as i; print('built', i.library_file())"

# ruff with pyproject's [tool.ruff] rules (a check only: it never rewrites a file), then
# native/ built as `make build` builds it (same CMakeLists, Python and build type) in a
# tree of its own with SQLML_WERROR=ON, so a new C warning fails here. A few seconds.
lint: venv
	$(VENV)/bin/ruff check .
	@mkdir -p .run
	@{ cmake -S . -B build/lint -DPython_EXECUTABLE=$(PY) -DCMAKE_BUILD_TYPE=Release -DSQLML_WERROR=ON \
	  && cmake --build build/lint -j2; } > .run/lint.log 2>&1 \
	  || { cat .run/lint.log; echo "lint: native/ does not compile clean under -Wall -Wextra -Werror"; exit 1; }
	@echo "native/ compiles clean under -Wall -Wextra -Werror"

test: build lint
	$(PY) -m pytest

demo: build
	$(PY) -m demo --server $(SERVER) $(if $(DATA),--data $(DATA))

up: build
	$(PY) -m demo.up up --server $(SERVER) --port $(PORT) --dir $(RUN_DIR)/up-$(SERVER)

down:
	@if [ -x $(PY) ]; then $(PY) -m demo.up down --dir $(RUN_DIR); else echo "nothing to stop"; fi

bench: build
	$(PY) -m bench $(BENCH)

fuzz: build
	SQLML_FUZZ_CALLS=$(or $(SQLML_FUZZ_CALLS),100000) $(PY) -m pytest tests/test_fuzz.py -s

clean:
	rm -rf build $(RUN_DIR)
