# The quick start: `make quick` (the whole report at the quick budget) and `make test`.
#
# An isolated install: the active virtualenv ($VIRTUAL_ENV) or conda env ($CONDA_PREFIX), else
# a project-local .venv made on first use, so two checkouts never share one editable install.
# The .venv sees the system's packages (--system-site-packages): a torch installed there is
# used as it is, never downloaded again. PYTHON=... picks an interpreter by hand.
ifneq ($(VIRTUAL_ENV),)
ENV_DIR := $(VIRTUAL_ENV)
else ifneq ($(CONDA_PREFIX),)
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := $(CURDIR)/.venv
endif
PYTHON ?= $(ENV_DIR)/bin/python
# Rules call `python -m bnaf` and tests call `dvc`, `snakemake`: found in the env first.
export PATH := $(ENV_DIR)/bin:$(PATH)
CORES ?= 2
# One stamp per interpreter: another env gets its own install.
STAMP := .make/installed$(subst /,_,$(PYTHON))

.PHONY: install quick paper test test-fast lint gpu-check mutate

# The project-local .venv (Debian/Ubuntu: needs the python3-venv package); a failed attempt
# leaves nothing behind.
$(CURDIR)/.venv/bin/python:
	python3 -m venv --system-site-packages .venv || { rm -rf .venv; exit 1; }
	rm -f $(STAMP)

$(STAMP): pyproject.toml $(filter $(CURDIR)/.venv/bin/python,$(PYTHON))
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
