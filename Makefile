# stylenet: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install install-browser test test-fast lint train-quick zoo serve data bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with stylenet and its dependencies (torch from pip)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install-browser: $(STAMP)  ## Debian's chromium (needs root) and ONNX Runtime Web (npm), for the browser tests (they skip without chromium)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@env -u STYLENET_CACHE -u STYLENET_ORT_WEB $(PY) -c "from stylenet.running.webexport import runtime_dir; print('ONNX Runtime Web:', runtime_dir())" \
		|| echo "ONNX Runtime Web not fetched (npm?): the web export's browser tests will fetch it or fail"

test: $(STAMP)  ## lint, then run the whole test suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)  ## lint, then run the tests without the end-to-end runs
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)  ## ruff check (the rules are in pyproject.toml)
	$(VENV)/bin/ruff check .

train-quick: $(STAMP)  ## a few-minute CPU training run on starry_night
	$(PY) train.py style=starry_night experiment=quick

zoo: $(STAMP)  ## retrain a ready-made model: STYLE=starry_night (experiment=cpu, ~45 min on 2 cores), eval, pack, MODELS.md
	@test -n "$(STYLE)" || { echo "error: name the painting: make zoo STYLE=starry_night (any of conf/style/)" >&2; exit 2; }
	$(PY) scripts/zoo.py build $(STYLE)

serve: $(STAMP)  ## the web page on the ready-made models and your runs in outputs/: http://127.0.0.1:7860
	@mkdir -p outputs
	$(PY) -m stylenet serve --models outputs $(ARGS)

data: $(STAMP)  ## fetch the paintings into ./data (ARGS="--coco" adds COCO train2014, 13 GB)
	$(PY) scripts/fetch_data.py $(ARGS)

BENCH := $(PY) -m stylenet bench
BENCH_OUT ?= bench-results.md
GPU := $(BENCH) --device cuda --warmup 3 --repeats 10
BENCH_GPU_OUT ?= bench-gpu-results.md
bench: $(STAMP)  ## time training, inference, optimization and folders (local and Ray engines) here, baseline beside ours (CPU: ~32 min) -> $(BENCH_OUT)
	rm -f $(BENCH_OUT)
	$(BENCH) train --loss-network vgg16 --baseline --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --loss-network vgg16 --precision fp32 --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --loss-network vgg16 --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --loss-network vgg19_caffe --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --loss-network vgg16 --model transformer_small --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --model multistyle --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) train --model adain --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) infer --baseline --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) infer --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) infer --model transformer_small,starry_night --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) infer --model multistyle,adain --sizes 1024 --backends eager --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) optimize --baseline --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) optimize --precision fp32 --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) optimize --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) video --model transformer,transformer_small,starry_night --markdown $(BENCH_OUT)
	$(BENCH) infer --model transformer_small,starry_night --sizes 1024 --backends compile --warmup 1 --repeats 3 --markdown $(BENCH_OUT)
	$(BENCH) video --model transformer_small,starry_night --size 640x360 --backends compile --markdown $(BENCH_OUT)
	$(BENCH) folder --photos 200 --markdown $(BENCH_OUT)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
		$(BENCH) web --warmup 1 --repeats 3 --markdown $(BENCH_OUT); \
	else echo "bench web skipped: no Chromium (make install-browser)"; fi

bench-gpu: $(STAMP)  ## the GPU checklist (BENCHMARKS.md): baseline beside ours, bf16/fp16/compile/channels-last, 4K latency -> $(BENCH_GPU_OUT)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: make bench-gpu needs a CUDA GPU; torch sees none (make bench times the CPU)')"
	rm -f $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --baseline --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision fp32 --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --channels-last --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --no-cudnn-benchmark --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --compile --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --cuda-graph --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg16 --precision bf16 --channels-last --cuda-graph --markdown $(BENCH_GPU_OUT)
	$(GPU) train --cuda-graph --markdown $(BENCH_GPU_OUT)
	$(GPU) train --loss-network vgg19_caffe --markdown $(BENCH_GPU_OUT)
	$(GPU) train --model multistyle --markdown $(BENCH_GPU_OUT)
	$(GPU) train --model adain --markdown $(BENCH_GPU_OUT)
	$(GPU) infer --baseline --sizes 1024,3840x2160 --backends eager --markdown $(BENCH_GPU_OUT)
	$(GPU) infer --sizes 1024,3840x2160 --precisions fp32,bf16,fp16 --backends eager,torchscript --markdown $(BENCH_GPU_OUT)
	$(GPU) infer --sizes 3840x2160 --precisions bf16 --backends compile --markdown $(BENCH_GPU_OUT)
	$(GPU) infer --model transformer_small,multistyle,adain --sizes 1024,3840x2160 --precisions fp32,bf16 --backends eager --markdown $(BENCH_GPU_OUT)
	$(GPU) optimize --baseline --markdown $(BENCH_GPU_OUT)
	$(GPU) optimize --precision bf16 --markdown $(BENCH_GPU_OUT)
	$(GPU) video --model transformer,transformer_small --size 640x360,1280x720,3840x2160 --precisions fp32,bf16 --markdown $(BENCH_GPU_OUT)

gpu-train: $(STAMP)  ## the GPU checklist's 10-minute training run with eval: experiment=gpu (STYLE=starry_night)
	$(PY) train.py style=$(or $(STYLE),starry_night) experiment=gpu

clean:  ## remove caches and run outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
