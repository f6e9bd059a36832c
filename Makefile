# The two commands of the README:
#   make lab    set everything up and open the course in JupyterLab
#   make test   set everything up and run every test (CI runs this)
# Both create .venv with everything the course needs; Python 3.11+ and pip are all it takes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
.PHONY: lab test setup bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[embedded-redis,course,test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

# JupyterLab refuses to run as root unless told; a container or CI machine often is root.
lab: setup
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

# Unit and integration tests, then every notebook in solutions mode (nbmake; see conftest.py).
test: setup
	$(BIN)/python -m pytest -p no:cacheprovider --durations=20 --nbmake --nbmake-timeout=60 tests notebooks

# Measured side by side on this machine: purchase latency, worker throughput, course runtime.
bench: setup
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/course.py

clean:
	rm -rf $(VENV) var
