# The two Quickstart commands: `make demo` (install + run the main job) and `make test` (install + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test ui bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip==25.3
	$(PIP) install -q -e '.[test]'
	@# encodec declares torchaudio, whose PyPI build is CUDA-linked: install encodec alone (DESIGN.md §8)
	$(PIP) install -q --no-deps encodec==0.1.1
	@problems=$$($(PIP) check 2>&1 | grep -v -e '^No broken requirements found' -e '^encodec 0.1.1 requires torchaudio'); \
	if [ -n "$$problems" ]; then echo "pip check: $$problems" >&2; exit 1; fi
	@# torch must stay the CPU build on disk: no CUDA wheels, no torchvision/torchaudio (DESIGN.md §8)
	@if $(PIP) freeze | grep -iqE '^(nvidia-|torchvision|torchaudio|triton)'; then \
		echo "error: a CUDA package or torchvision/torchaudio was installed; check the pins" >&2; exit 1; fi
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/mm demo

test: install
	$(PY) -m pytest

ui: install
	$(VENV)/bin/mm ui

bench: install
	$(PY) benchmarks/bench_etl.py
	$(PY) benchmarks/bench_crawl.py
	$(PY) benchmarks/bench_shards.py
	$(PY) benchmarks/bench_encodec.py
	$(PY) benchmarks/bench_query_cli.py
	$(PY) benchmarks/bench_token_cache.py
	$(PY) benchmarks/bench_decontamination.py

clean:
	rm -rf data .dagster_home sources/demo
