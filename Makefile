# The thin command layer: CI runs exactly what developers run.
SHELL := /bin/bash
RCE_HOST ?= 127.0.0.1
RCE_PORT ?= 8000
export RCE_HOST RCE_PORT

.PHONY: setup test-tools run test test-fast lint image doctor bench bench-load soak clean

setup:            ## install uv, the locked venv, a Docker engine and the sandbox image
	scripts/bootstrap.sh

test-tools:       ## install the outside tools only the tests run (haproxy, docker-compose, node, ...)
	scripts/install-test-tools.sh

run: setup        ## start the API on :8000 (local folder store, local Docker)
	uv run --frozen rce serve

lint:             ## ruff + mypy strict
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy

test: setup test-tools lint  ## the whole suite: unit, contract, integration (Docker, SeaweedFS), e2e
	scripts/test.sh

test-fast:        ## unit tests only (no Docker, no S3)
	uv run pytest tests/unit -q

image:            ## (re)build the sandbox image if its recipe changed
	uv run --frozen rce image build

doctor:           ## check the engine, image, store and auth settings
	uv run --frozen rce doctor

bench: setup      ## the benchmarks: rce beside a bare `docker run --rm`, per language, under load
	uv run --frozen rce bench
	uv run --frozen rce bench --suite lang
	uv run --frozen rce bench --suite load

bench-load: setup ## rce under load: burst, paced, concurrency 1/4/8 beside the lifecycle ceiling
	uv run --frozen rce bench --suite load

soak: setup       ## the load soak (bounded)
	uv run python bench/soak.py

clean:
	rm -rf .rce .pytest_cache .mypy_cache .ruff_cache
