# OpsConductor Pulse. The README documents `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_DB ?= postgresql://pulse:pulse@127.0.0.1:5432/pulse
PYTEST_ARGS ?=

.PHONY: install services browser test demo bench clean

$(STAMP): pyproject.toml scripts/venv.sh
	bash scripts/venv.sh
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/services.sh

browser: install
	bash scripts/browser.sh

test: install services browser
	$(BIN)/pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/pulse demo

bench: install services
	PULSE_DATABASE_URL=$${PULSE_DATABASE_URL:-$(TEST_DB)} PULSE_MQTT_URL=$${PULSE_MQTT_URL:-mqtt://127.0.0.1:1883} \
		$(BIN)/pulse bench ingest --json

clean:
	rm -rf $(VENV) .pulse .pytest_cache
