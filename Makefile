# segapp: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-fast lint install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/segapp-data synth --out data/synthetic --n 240 --size 128 --seed 0
	$(VENV)/bin/segapp-data synth --out data/synthetic-holdout --n 40 --size 128 --seed 1
	# a run the demo made before is replaced; a model of yours in runs/quickstart makes segapp fit refuse
	if [ -f runs/quickstart/.made-by-make-demo ]; then rm -rf runs/quickstart; fi
	$(VENV)/bin/segapp fit --config configs/quickstart.yaml
	touch runs/quickstart/.made-by-make-demo
	$(VENV)/bin/segapp-predict --checkpoint runs/quickstart/checkpoints/best.ckpt \
		--input data/synthetic-holdout/images --output runs/quickstart/predictions --overwrite
	@echo "held-out predicted masks: runs/quickstart/predictions (predictions.csv lists them)"

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf runs data/synthetic data/synthetic-holdout .pytest_cache
