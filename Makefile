# Every target bootstraps uv (through pip when it is missing) and syncs the locked environment first.
SHELL := /bin/bash
# Recursive on purpose: evaluated after the `uv` target may have installed it.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
NAME ?=

.PHONY: uv sync run test test-e2e check bench fmt

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
	  echo "uv not found; installing it with pip"; \
	  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv 2>/dev/null || \
	  python3 -m pip install --quiet --user --break-system-packages uv; }

sync: uv
	@$(UV) sync --frozen --quiet

run: sync
	exec .venv/bin/tradedesk run

test: sync
	.venv/bin/pytest

# The browser tests also need the `e2e` group (playwright) and Debian's chromium, which scripts/test-e2e installs.
test-e2e: uv
	@$(UV) sync --frozen --quiet --group e2e
	bash scripts/test-e2e

check: sync
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: sync
	.venv/bin/tradedesk bench $(NAME)

fmt: sync
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
