# Two entry points: `make run` (the GUI, on the built-in demo when no evidence is given) and `make test`.
# Both create .venv and install everything on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

run: $(STAMP)
	$(BIN)/dstack-inspector gui $(EVIDENCE)

test: $(STAMP)
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/hardware.py
	$(BIN)/python bench/eventlog.py
	$(BIN)/python bench/measure.py
	$(BIN)/python bench/chain.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python bench/gui.py

$(STAMP): pyproject.toml scripts/system-deps.sh
	./scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
