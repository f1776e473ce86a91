# The quick start: `make quick` (the whole report at the quick budget) and `make test`.
PYTHON ?= python3
CORES ?= 2
STAMP := .make/installed

.PHONY: install quick paper test test-fast lint gpu-check mutate

$(STAMP): pyproject.toml
	@# A CPU build of torch from PyPI's index is a few hundred MB; any torch already
	@# installed (e.g. a CUDA build) is kept.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p .make && touch $(STAMP)

install: $(STAMP)

# The whole report, reports/report.md (rule all), then its self-contained HTML twin.
quick: $(STAMP)
	$(PYTHON) -m snakemake --cores $(CORES) --config params=params/quick
	$(PYTHON) -m snakemake --report reports/report.html --config params=params/quick

paper: $(STAMP)
	$(PYTHON) -m snakemake --cores $(CORES) --config params=params/paper
	$(PYTHON) -m snakemake --report reports/report.html --config params=params/paper

# --dist loadfile: the tests of one file share a worker (one test SLURM cluster per file).
test: $(STAMP)
	$(PYTHON) -m pytest -n $(CORES) --dist loadfile

test-fast: $(STAMP)
	$(PYTHON) -m pytest -n $(CORES) -m "not slow"

# On a CUDA machine: the CUDA tests, step throughput against the authors' approach and pyro,
# a POWER- and a BSDS300-sized epoch, a VAE step and an IS NLL, as one table (< 8 minutes).
# Without CUDA it says so in one line and fails.
gpu-check: $(STAMP)
	$(PYTHON) benchmarks/gpu_check.py

lint: $(STAMP)
	$(PYTHON) -m ruff check .

# Mutation testing of the core modules with the fast tests (tests/README.md); by hand, never in
# CI. MUTANTS narrows it to some modules, e.g. make mutate MUTANTS='bnaf.core.optim*'.
# Single-threaded torch: mutmut forks a process per mutant.
MUTANTS ?=
mutate: $(STAMP)
	$(PYTHON) -c "import mutmut" 2>/dev/null || $(PYTHON) -m pip install -e ".[dev,mutate]"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 mutmut run --max-children $(CORES) $(MUTANTS)
	mutmut results
	OMP_NUM_THREADS=1 $(PYTHON) tests/mutate_by_hand.py
