PYTHON ?= python3
WORKDIR ?= demo-workdir

.PHONY: install demo test bench

# Install the package with its test extras. torch is a range in pyproject.toml; install the
# CPU wheel first (`pip install torch==2.13.0`) on machines without a GPU to avoid CUDA downloads.
install:
	$(PYTHON) -m pip install -q -e ".[test]"

demo: install
	$(PYTHON) -m ser.cli demo --workdir $(WORKDIR)

# One worker per core (tests run single-threaded), whole files per worker so that module fixtures
# are built once.
test: install
	$(PYTHON) -m pytest -q -n auto --dist loadfile

bench: install
	$(PYTHON) benchmarks/extract.py
	$(PYTHON) benchmarks/train.py
	$(PYTHON) benchmarks/sweep.py
