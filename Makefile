VENV ?= .venv
DEMO_ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lmforge demo $(DEMO_ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/cli_startup.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/eval_speed.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/train_throughput.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/export_latency.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/dpo_memory.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/grpo_throughput.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/serve_throughput.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/serve_load.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/rag_speed.py

clean:
	rm -rf $(VENV) runs
