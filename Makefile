# The two commands a newcomer needs:
#   make run    build and run the daemon with embedded defaults (installs build dependencies first)
#   make test   run every test: unit, integration (Rust SDK), and the boto3 / AWS CLI suite

# The distribution's rocksdb lives in the multiarch library directory.
export ROCKSDB_LIB_DIR ?= /usr/lib/$(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
SLUICE_BIN ?= $(TARGET_DIR)/debug/sluice

.PHONY: run deps build release test test-rust test-compat test-secure lint fmt fuzz crash-long bench clean

run: deps
	cargo run --release -- serve

deps:
	@scripts/deps.sh

build: deps
	cargo build

release: deps
	cargo build --release

test: deps
	scripts/venv.sh
	scripts/test-servers.sh >/dev/null
	cargo build --bins
	cargo test
	SLUICE_SECURE=1 cargo test --test api_streams --test api_settings --test reshard --test crash_recovery
	SLUICE_BIN=$(SLUICE_BIN) .venv/bin/python -m pytest -q tests/compat
	SLUICE_SECURE=1 SLUICE_BIN=$(SLUICE_BIN) .venv/bin/python -m pytest -q tests/compat

test-rust: deps
	cargo test

test-compat: build
	scripts/venv.sh
	scripts/test-servers.sh >/dev/null
	SLUICE_BIN=$(SLUICE_BIN) .venv/bin/python -m pytest -q tests/compat

# The same suite against daemons with TLS and verified signatures (every client signs and trusts a
# test CA).
test-secure: build
	scripts/venv.sh
	scripts/test-servers.sh >/dev/null
	SLUICE_SECURE=1 cargo test --test api_streams --test api_settings --test reshard --test crash_recovery
	SLUICE_SECURE=1 SLUICE_BIN=$(SLUICE_BIN) .venv/bin/python -m pytest -q tests/compat

# Every fuzz target for FUZZ_SECONDS each (CI runs 20).
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The crash harness's long mode: hundreds of kill -9 cycles under load.
CRASH_CYCLES ?= 300
crash-long: deps
	SLUICE_CRASH_CYCLES=$(CRASH_CYCLES) cargo test --release --test crash_harness -- --nocapture

lint: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt

clean:
	cargo clean
