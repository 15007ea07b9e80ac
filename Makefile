# Two entry points, both self-installing: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080
LINTED := $(wildcard src tests bench)

.PHONY: install demo test lint format bench examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

## demo: generate an app with a `posts` feature in a temp dir and serve it on 127.0.0.1
demo: install
	@dir="$${DEMO_DIR:-$$(mktemp -d -t petrock-demo-XXXXXX)}" && \
	cd "$$dir" && $(CURDIR)/$(BIN)/petrock new blog && \
	cd blog && $(CURDIR)/$(BIN)/petrock feature add posts && \
	echo "demo app in $$dir/blog — open http://127.0.0.1:$(PORT)/posts (Ctrl-C stops it)" && \
	$(CURDIR)/$(BIN)/petrock serve --port $(PORT)

## test: the whole suite (petrock's tests, generated apps' own tests, examples, reliability)
test: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: install
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

bench: install
	$(BIN)/python -m bench

examples: install
	$(BIN)/python -m petrock.examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
