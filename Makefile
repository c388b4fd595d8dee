PYTHON ?= python3
WORKDIR ?= demo-workdir

.PHONY: install demo test bench

# Install the package with its test extras. torch is a range in pyproject.toml; install the
# CPU wheel first (`pip install torch==2.13.0`) on machines without a GPU to avoid CUDA downloads.
# The stamp makes a second `make demo`/`make test` skip pip (13 s even when nothing changes);
# editing pyproject.toml, or `make install`, installs again.
install:
	$(PYTHON) -m pip install -q -e ".[test]"
	touch .installed

.installed: pyproject.toml
	$(MAKE) install

demo: .installed
	$(PYTHON) -m ser.cli demo --workdir $(WORKDIR)

# One worker per core (tests run single-threaded), whole files per worker so that module fixtures
# are built once.
test: .installed
	$(PYTHON) -m pytest -q -n auto --dist loadfile

bench: .installed
	$(PYTHON) benchmarks/extract.py
	$(PYTHON) benchmarks/frontends.py
	$(PYTHON) benchmarks/optimizer.py
	$(PYTHON) benchmarks/train.py
	$(PYTHON) benchmarks/sweep.py
