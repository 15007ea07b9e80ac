# Two entry points, both self-installing: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080
LINTED := $(wildcard src tests bench)

# Where `make install` puts the `petrock` launcher (what pipx does: a link into a venv).
BINDIR ?= $(HOME)/.local/bin

.PHONY: install venv demo test image-test lint format bench examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

## install: .venv, plus `petrock` on your PATH in every new shell, login shells too (a link in BINDIR;
## scripts/add-to-path.sh adds BINDIR to ~/.profile and ~/.bashrc as rustup and uv do; NO_MODIFY_PATH=1 skips that)
install: $(STAMP)
	@mkdir -p "$(BINDIR)"
	@ln -sfn "$(abspath $(BIN))/petrock" "$(BINDIR)/petrock"
	@echo "installed $(BINDIR)/petrock -> $(abspath $(BIN))/petrock"
	@sh scripts/add-to-path.sh "$(BINDIR)"

## demo: generate an app with a `posts` feature in a temp dir and serve it on 127.0.0.1
demo: install
	@dir="$${DEMO_DIR:-$$(mktemp -d -t petrock-demo-XXXXXX)}" && \
	cd "$$dir" && $(abspath $(BIN))/petrock new blog && \
	cd blog && $(abspath $(BIN))/petrock feature add posts && \
	echo "demo app in $$dir/blog — open http://127.0.0.1:$(PORT)/posts (Ctrl-C stops it)" && \
	$(abspath $(BIN))/petrock serve --port $(PORT)

## test: the whole suite (petrock's tests, generated apps' own tests, examples, reliability)
## (four workers on two cores: a third of the suite's time is waiting on servers, timeouts and the network)
test: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder --durations=15

## image-test: build a generated app's image from its Dockerfile with buildah and run it (root; part of `test` too)
image-test: venv
	$(BIN)/python -m pytest tests/image --durations=3

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: venv
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

bench: venv
	$(BIN)/python -m bench

examples: venv
	$(BIN)/python -m petrock.examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	@if [ "$$(readlink "$(BINDIR)/petrock")" = "$(abspath $(BIN))/petrock" ]; then rm "$(BINDIR)/petrock"; fi
