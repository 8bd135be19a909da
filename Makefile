# opencorpus: `make corpus && make train` builds the default corpus and trains on it.
# RECIPE=path picks another recipe; WORKERS sets parallel shards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RECIPE ?= recipes/default.yaml
WORKERS ?= 2
# Keep Prefect's state in the project, and its telemetry off (there is no network to send it to).
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# The temporary API server can take longer than its default 20 s to start on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
NAME = $(shell $(BIN)/python -c "import yaml,sys; print(yaml.safe_load(open('$(RECIPE)'))['name'])")

.PHONY: venv corpus train eval test test-fast bench serve clean-data quality-model ablate

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# Prefect's server database, migrated once per Prefect version: a new Prefect home starts from it
	$(BIN)/python -m flows.server template || echo "no database template: a new Prefect home migrates its own database"
	touch $@

corpus: venv
	$(BIN)/opencorpus run $(RECIPE) --workers $(WORKERS) --cards-dir data_cards

train: venv
	$(BIN)/opencorpus train --recipe $(RECIPE)
	$(BIN)/opencorpus eval runs/$(NAME)

eval: venv
	$(BIN)/opencorpus eval runs/$(NAME)

# Two processes, each taking whole test files (module fixtures are built once): the suite
# waits on subprocesses and servers as much as it computes, so two cores nearly halve it.
test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# Every performance claim of the README against its named baseline, both sides alternating
# run by run, REPEATS (3) runs each; prints the table the README quotes and writes it to
# bench/results/latest.md. Claims whose baseline (datatrove, nanoGPT: see bench/all.py) or
# data (../shared) is missing are listed as skipped. QUICK=1: the headline claims only, smaller.
bench: venv
	$(BIN)/python bench/all.py $(if $(QUICK),--quick) $(if $(REPEATS),--repeats $(REPEATS))

# Local Prefect server and UI (http://127.0.0.1:4200). In another terminal, point runs and
# scheduled deployments at it:
#   PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/opencorpus deploy $(RECIPE) --cron "0 3 * * *"
serve: venv
	@echo "Prefect UI: http://127.0.0.1:4200  (runs use it with PREFECT_API_URL=http://127.0.0.1:4200/api)"
	$(BIN)/prefect server start

# The example ablation over ../shared/corpora (recipes/ablations/; docs/ablations.md): reruns reuse
# every finished corpus and run. Report: ablations/wikitext-dedup-mix/report.md
ABLATION ?= recipes/ablations/wikitext_dedup_mix.yaml
ablate: venv
	$(BIN)/python -m model.heldout cloze ../shared/corpora/classic/wikitext-103_valid.txt data/ablations/wikitext-cloze.jsonl --items 300
	$(BIN)/opencorpus ablate $(ABLATION) --workers $(WORKERS)

clean-data:
	rm -rf data runs

# The example quality scorer of recipes/web_quality (needs ../shared/corpora; not committed):
# data/quality/wiki_books_vs_cc.npz and its held-out figures (.json). See docs/cleaning.md.
quality-model: venv
	$(BIN)/python recipes/web_quality/make_scorer.py
