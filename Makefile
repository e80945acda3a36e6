# The two commands a newcomer needs:  `make lab`  and  `make test`.
# Both start from nothing but Python 3.11+, node and npm: they create .venv, install the package (which builds
# the JupyterLab extension through hatch-jupyter-builder) and then do their job.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8888
export GLOG_v ?= 3

.PHONY: lab test lint bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the package definition changes.
LABEXTENSION_SOURCES := $(wildcard labextension/package.json labextension/yarn.lock labextension/tsconfig.json \
                           labextension/src/*.ts labextension/style/*)
$(VENV)/.installed: $(BIN)/python pyproject.toml $(LABEXTENSION_SOURCES)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Debian's Chromium for the real-browser tests (never `playwright install`: it downloads a browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# The demo checkpoint is built once into the user's cache; a copy beside the notebooks opens in the
# Checkpoint Viewer from the file browser.
lab: $(VENV)/.installed
	cp -f "$$($(BIN)/python -m ms_notebook.demo prepare)" notebooks/digits-pretrained.ckpt
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) --no-browser --notebook-dir=notebooks \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

lint: $(VENV)/.installed
	$(BIN)/ruff check ms_notebook tests benchmarks

test: $(VENV)/.installed chromium lint
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist ms_notebook/labextension labextension/lib labextension/node_modules test-artifacts
