# Two commands from a fresh clone: `make run` (the main comparison) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test check plot bench figures clean

# A virtual environment in the repository with the package (editable) and the test extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job: FedAvg, sequential PWFL and PWFL (K=2) on the embedded mnist-5k. It
# regenerates the committed results/compare/quick on purpose, hence --overwrite.
run: $(STAMP)
	$(BIN)/pwfl compare --config experiments/configs/quick.toml \
		--strategies fedavg,pwfl-sequential,pwfl --seeds 0 --out results/compare/quick --overwrite

# Two pytest workers: most tests wait on Ray, Flower or a child process for part of
# their time, so two keep both cores of a 2-core machine busy.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

check: $(STAMP)
	$(BIN)/ruff check pwfl tests experiments benchmarks
	$(BIN)/ruff format --check pwfl tests experiments benchmarks
	$(BIN)/mypy

# Every benchmark side by side in one run; tables on stdout, CSV files in results/bench/.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

plot: $(STAMP)
	$(BIN)/pwfl plot results/compare/quick

# Every figure and table of docs/results.md and the README, into results/ and img/ (about 40 min on 2 cores).
figures: $(STAMP)
	$(BIN)/python experiments/reproduce.py

clean:
	rm -rf $(VENV) .pytest_cache
