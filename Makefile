# Lightbox: `make run` serves the demo, `make test` runs the whole suite (PostgreSQL + Redis).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

TEST_ENV := LIGHTBOX_ENV=test \
	LIGHTBOX_DATA_DIR=$(CURDIR)/var/test \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/lightbox} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/1} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/2}

.PHONY: run test lint demo-code system-deps ocr-deps node-deps install install-dev clean

run: $(STAMP) ocr-deps
	@mkdir -p var
	@scripts/run.sh

# De-identified copies read every image with Tesseract (imaging/dicom/ocr.py). Without it the
# portal still runs, and every image is reported as "could not be checked for text".
# Another apt (unattended-upgrades) may hold the locks: install waits up to 5 minutes for dpkg's
# (DPkg::Lock::Timeout); update's lists lock has no such option (apt 2.6), so update is retried.
ocr-deps:
	@command -v tesseract >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then echo "Installing tesseract-ocr (text in images)..."; \
	    for try in 1 2 3 4 5 6 7 8 9 10; do apt-get update -qq && break; [ $$try = 10 ] && exit 1; echo "apt-get update failed (another apt running?); trying again in 30 s"; sleep 30; done; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq tesseract-ocr >/dev/null; \
	  else echo "Note: tesseract-ocr is not installed (sudo apt-get install tesseract-ocr); images will be reported as not checked for text."; fi; }

# The linters first (a few seconds), then the suite.
test: $(DEV_STAMP) system-deps node-deps
	@$(MAKE) --no-print-directory lint
	@$(TEST_ENV) $(BIN)/python scripts/check_services.py
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

# Style; a model change without its migration (the test settings; no database needed: Django only
# warns that it could not compare the history with one); the layer contracts in pyproject.toml
# (tests/test_layers.py adds cycles between apps and views that write).
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	@echo "$(BIN)/python manage.py makemigrations --check --dry-run"
	@$(TEST_ENV) $(BIN)/python -W "ignore:Got an error checking a consistent migration history:RuntimeWarning" \
	  manage.py makemigrations --check --dry-run
	$(BIN)/lint-imports --no-logo --no-cache

demo-code: $(STAMP)
	@$(BIN)/python manage.py demo_code

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Lightbox needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements.txt $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(STAMP)

# Debian packages the tests drive: Chromium for browser tests (Playwright's own browser download
# is not available), 7-Zip to open encrypted exports as a patient would, Tesseract to read text
# burned into pixels (imaging/dicom/ocr.py).
SYSTEM_PACKAGES := chromium:chromium 7z:p7zip-full Orthanc:orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb \
	tesseract:tesseract-ocr
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing$$missing for the tests..."; \
	    for try in 1 2 3 4 5 6 7 8 9 10; do apt-get update -qq && break; [ $$try = 10 ] && exit 1; echo "apt-get update failed (another apt running?); trying again in 30 s"; sleep 30; done; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing fonts-dejavu-core >/dev/null; \
	  else echo "The tests need:$$missing (sudo apt-get install$$missing)"; exit 1; fi; fi

# axe-core for the accessibility test (tests/e2e/test_accessibility.py), pinned in package-lock.json
# and installed from the npm registry; the test injects it into Chromium from node_modules (no CDN).
NODE_STAMP := node_modules/.installed
node-deps: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "The accessibility test needs Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache
