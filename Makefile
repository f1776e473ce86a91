# The quick start: `make quick` (the whole report at the quick budget) and `make test`.
PYTHON ?= python3
CORES ?= 2
STAMP := .make/installed

.PHONY: install quick paper test test-fast lint

$(STAMP): pyproject.toml
	@# A CPU build of torch from PyPI's index is a few hundred MB; any torch already
	@# installed (e.g. a CUDA build) is kept.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p .make && touch $(STAMP)

install: $(STAMP)

quick: $(STAMP)
	$(PYTHON) -m snakemake --cores $(CORES) --config params=params/quick

paper: $(STAMP)
	$(PYTHON) -m snakemake --cores $(CORES) --config params=params/paper

test: $(STAMP)
	$(PYTHON) -m pytest -n $(CORES)

test-fast: $(STAMP)
	$(PYTHON) -m pytest -n $(CORES) -m "not slow"

lint: $(STAMP)
	$(PYTHON) -m ruff check .
