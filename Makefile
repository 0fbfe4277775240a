# Two commands for a fresh machine (see README): `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets/fer2013/fer2013.csv.gz
HOST ?= 127.0.0.1
PORT ?= 8000
# An extra package index for torch, e.g. PyTorch's CPU-only wheels (see README, "Install"); empty: PyPI's.
TORCH_INDEX ?=

.PHONY: run test evaluate benchmark system-deps lint

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# `make run` serves the web app: only the `web` extra (a few hundred MB, no torch, Qt or browser)
$(VENV)/.web: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[web]"
	touch $@

# `make test` and the other targets: every extra
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e ".[train,web,desktop,distributed,dev]"
	touch $@ $(VENV)/.web

# Browser tests need Debian's chromium, the PostgreSQL tests a PostgreSQL server, the desktop
# tests Qt's runtime libraries. Installed only when missing, only where we are root, and
# without the packages they merely recommend.
SYSTEM_PACKAGES := chromium fonts-liberation postgresql libegl1 libgl1 libx11-6 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "not root: skipping system packages ($$missing); browser/PostgreSQL/Qt tests will be skipped"; fi; \
	fi

run: $(VENV)/.web
	$(VENV)/bin/moodlens serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed system-deps
	$(PY) -m pytest

evaluate: $(VENV)/.installed
	$(VENV)/bin/moodlens evaluate $(DATA)

benchmark: $(VENV)/.installed
	$(VENV)/bin/moodlens benchmark

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests scripts
