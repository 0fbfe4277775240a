# Two commands for a fresh machine (see README): `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets/fer2013/fer2013.csv.gz

.PHONY: run test evaluate benchmark system-deps lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,web,desktop,distributed,dev]"
	touch $@

# Browser tests need Debian's chromium, the PostgreSQL tests a PostgreSQL server, the desktop
# tests Qt's runtime libraries. Installed only when missing, and only where we are root.
SYSTEM_PACKAGES := chromium postgresql libegl1 libgl1 libx11-6 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "not root: skipping system packages ($$missing); browser/PostgreSQL/Qt tests will be skipped"; fi; \
	fi

run: $(VENV)/.installed
	$(VENV)/bin/moodlens serve

test: $(VENV)/.installed system-deps
	$(PY) -m pytest

evaluate: $(VENV)/.installed
	$(VENV)/bin/moodlens evaluate $(DATA)

benchmark: $(VENV)/.installed
	$(VENV)/bin/moodlens benchmark

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests scripts
