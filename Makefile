# botyard: the two commands (`make run`, `make test`) create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install system-deps compile bench serve notebooks notebook-images kernel clean checkov

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) system-deps

## PostgreSQL binaries for the trigger service's store tests (Debian package; needs root or sudo).
system-deps:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends postgresql; }

## Train the shipped sample bot end to end through kfp.local and print its metrics.
run: $(STAMP)
	$(BIN)/botyard run

## checkov in its own environment: its dependencies fight the project's pins (../shared/STACK.md).
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q checkov==3.3.30

## checkov over manifests/ and containers/ (.checkov.yaml lists the skipped checks and why).
checkov: $(CHECKOV)
	$(CHECKOV) --config-file .checkov.yaml

## Run the whole test suite (what CI runs).
test: $(STAMP) system-deps $(CHECKOV)
	$(BIN)/python -m pytest -q -n 2

## Compile every pipeline to build/pipelines/*.yaml.
compile: $(STAMP)
	$(BIN)/botyard compile --output-dir build/pipelines

## Benchmarks: figures go to bench/results.json and bench/results.md.
bench: $(STAMP)
	$(BIN)/botyard bench --output-dir bench

## Serve every bot in ./models on 127.0.0.1:8080.
serve: $(STAMP)
	$(BIN)/botyard serve --models-root models --host 127.0.0.1 --port 8080

## Jupyter Lab on notebooks/ in .venv, with the `botyard` kernel registered (e.g. JUPYTER_ARGS="--no-browser --port 8890").
notebooks: kernel
	$(BIN)/jupyter lab --notebook-dir notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(JUPYTER_ARGS)

## Run every notebook on the sample bot and refresh the README's pictures (notebooks/images/).
notebook-images: kernel
	out=$$(mktemp -d) && cd notebooks && for nb in *.ipynb; do \
	  $(abspath $(BIN))/papermill --no-progress-bar "$$nb" "$$out/$$nb" -p FIGURES_DIR images || exit 1; done

## The `botyard` Jupyter kernel (this .venv's Python), registered inside .venv.
kernel: $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name botyard --display-name "botyard (.venv)" >/dev/null

clean:
	rm -rf build runs models bench
