# The two commands a newcomer needs:  `make lab`  and  `make test`.
# Both start from nothing but Python 3.11+, node and npm: they create .venv, install the package (which builds
# the JupyterLab extension through hatch-jupyter-builder) and then do their job.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8888
export GLOG_v ?= 3

.PHONY: lab test test-oldest lint bench chromium nginx iproute2 clean screenshots

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

# Debian's nginx for the remote-checkpoint tests and benchmark (started by them as a plain process).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx-light; }

# iproute2's `ip netns` for the two-machine launch test (a second "machine" as a network namespace).
iproute2:
	@command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq iproute2; }

# The demo checkpoint is built once into the user's cache; a copy beside the notebooks opens in the
# Checkpoint Viewer from the file browser.
lab: $(VENV)/.installed
	cp -f "$$($(BIN)/python -m ms_notebook.demo prepare)" notebooks/digits-pretrained.ckpt
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) --no-browser --notebook-dir=notebooks \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

lint: $(VENV)/.installed
	$(BIN)/ruff check ms_notebook tests benchmarks

test: $(VENV)/.installed chromium nginx iproute2 lint
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# The MindSpore-facing tests (transfer, runs, launch, set merge and MindSpore's merge references) against the oldest MindSpore the package supports, in a
# second venv. It reuses the extension that `make test` built (SKIP_JUPYTER_BUILDER): only Python changes.
OLDEST_MINDSPORE ?= 2.7.0
VENV_OLDEST := .venv-oldest
MINDSPORE_TESTS := tests/test_transfer_plan.py tests/test_transfer_training.py tests/test_transfer_script.py \
                   tests/test_runner.py tests/test_curves.py tests/test_run_checkpoints.py tests/test_devices.py \
                   tests/test_worker.py tests/test_launch.py tests/test_functional_loop.py tests/test_runner_functional.py \
                   tests/test_checkpoint_sets_ranks.py tests/test_checkpoint_sets_use.py
$(VENV_OLDEST)/.installed: $(VENV)/.installed pyproject.toml
	$(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install --quiet --upgrade pip
	SKIP_JUPYTER_BUILDER=1 $(VENV_OLDEST)/bin/python -m pip install --quiet -e ".[test]" "mindspore==$(OLDEST_MINDSPORE)"
	touch $@

test-oldest: $(VENV_OLDEST)/.installed
	$(VENV_OLDEST)/bin/python -c "import mindspore; print('MindSpore', mindspore.__version__)"
	$(VENV_OLDEST)/bin/python -m pytest $(MINDSPORE_TESTS) $(PYTEST_ARGS)

# The README's screenshots, taken by the layout browser test at 1440x900 (and 1024x700 with the side panel).
screenshots: $(VENV)/.installed chromium
	$(BIN)/python -m pytest tests/browser/test_layout.py -q
	cp test-artifacts/readme/studio-browse.png docs/images/browser.png
	cp test-artifacts/readme/studio-transfer.png docs/images/transfer.png
	cp test-artifacts/readme/studio-run.png docs/images/studio.png
	cp test-artifacts/readme/studio-narrow-dark.png docs/images/studio-narrow-dark.png

bench: $(VENV)/.installed nginx
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_OLDEST) build dist ms_notebook/labextension labextension/lib labextension/node_modules test-artifacts
