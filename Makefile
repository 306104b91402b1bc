# `make demo` and `make test` create .venv on first use, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean results-one-config results-ablation results-chomsky-baselines \
	results-heldout report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	# Without a GPU, take the CPU build of PyTorch (small and local here); with one, let pip choose.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	# ray: so that the test suite runs `pntm sweep --executor ray` on a local Ray instance;
	# peers: so that it runs the mamba and slstm peer models.
	$(BIN)/python -m pip install -q -e '.[test,plot,ray,peers]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Trains P-NTM on parity (lengths 1-40) and prints sequence accuracy at lengths 1-40 and up to 500
# (32 examples per length). The shipped config, unchanged, on a 500-step budget (its schedules
# scale with the budget: 250 steps of them, then 250 at a falling rate) and both cores; seed 0,
# chosen on validation among seeds 0-2 at this budget (RESULTS.md, "make demo with the work
# tape"). A demo, not a result. A second `make demo` resumes or reuses the run and prints the
# table again.
demo: $(STAMP)
	if [ -d runs/demo-parity ]; then $(BIN)/pntm train --out runs/demo-parity; \
	else $(BIN)/pntm train --task parity --model pntm --seed 0 --steps 500 --threads 2 \
	  --set train.eval_at_end=false --out runs/demo-parity; fi
	$(BIN)/pntm eval runs/demo-parity --samples 32

# The one-config P-NTM table of RESULTS.md: the shipped config, unchanged, on every task (seeds
# SEEDS, two runs at a time on 2 cores: about 5 hours per seed here, up to 8,000 steps a run;
# seed 0 took about 10 core-hours of training and evaluation),
# then its tables. Resumes. Seed 0 of this config ran as the variant that was adopted, in
# results/explore/work-tape-scope-late-extended, -extended and work-tape-scope (RESULTS.md, "A
# work tape trained on past its schedule", says which run is which task's). Earlier versions:
# results/one-config-content (no work tape, 4,000 steps: add --set model_config.work_tape=false
# --set model_config.window_scope=all --set train.steps=4000 --set train.schedule_steps=0
# --set train.lr_schedule=constant --set train.lr_decay_start=0 --set train.early_stop.start=0),
# results/one-config-32-states (jumps to the origin as well) and results/one-config (8 states).
SEEDS ?= 0
results-one-config: $(STAMP)
	$(BIN)/pntm sweep --tasks all --models pntm --seeds $(SEEDS) --out results/one-config-work-tape \
	  --workers 2
	$(BIN)/pntm report results/one-config-work-tape --out RESULTS.md --no-plots

# What each general bias of the one config is worth: four tasks, seed 0, one --set change per
# variant folder of ABLATION_OUT, then the variants x tasks table of RESULTS.md against the same
# seeds of ABLATION_BASE (resumes). The config is the shipped one (work tape, content landings).
# RESULTS.md's tables of earlier configs (results/ablation-32-states, results/ablation) were made
# by this target at the commits RESULTS.md names, whose config and variants they need.
ABLATION_TASKS ?= parity,cycle_navigation,reverse,odds_first
ABLATION_OUT ?= results/ablation-work-tape
ABLATION_BASE ?= results/one-config-work-tape
ABLATION_SETS ?=
ABLATION_WORKERS ?= 2
ABLATION_SWEEP = $(BIN)/pntm sweep --tasks $(ABLATION_TASKS) --models pntm --seeds 0 \
	  --workers $(ABLATION_WORKERS) $(ABLATION_SETS)
results-ablation: $(STAMP)
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/no-work-tape --set model_config.work_tape=false
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/no-state-heads --set model_config.state_heads=0
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/one-layer --set model_config.layers=1
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/no-content-head --set model_config.content_heads=0
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/origin-jumps --set model_config.jump_to=origin
	$(ABLATION_SWEEP) --out $(ABLATION_OUT)/no-token-window --set model_config.window=0 \
	  --set model_config.window_scope=all
	$(BIN)/pntm ablation $(ABLATION_OUT) --base $(ABLATION_BASE) --out RESULTS.md

# The baselines with their shipped configs on the 15 tasks of Deletang et al. (`--tasks chomsky`),
# seeds SEEDS, then their tables in RESULTS.md (the published-vs-ours table among them). Resumes.
# An LSTM run takes 1-7 minutes here, a Transformer's about twice that.
BASELINES ?= lstm,transformer
results-chomsky-baselines: $(STAMP)
	$(BIN)/pntm sweep --tasks chomsky --models $(BASELINES) --seeds $(SEEDS) \
	  --out results/chomsky-baselines --workers 2
	$(BIN)/pntm report results/chomsky-baselines --out RESULTS.md --no-plots

# The shipped P-NTM config on the six held-out tasks of benchmarks/heldout/make_tasks.py (no
# choice was made on them), fed as JSONL: for each task and seed of HELDOUT_SEEDS, train (it
# resumes), then evaluate on the task's validation and test files unless eval.json already
# holds the test file's; then their table in RESULTS.md. Data: build/heldout (not committed;
# the script makes the same files everywhere, and each run's config.yaml holds their sha256).
HELDOUT_TASKS ?= count_mod_3 binary_increment majority interleave bitwise_xor repeat_copy
HELDOUT_SEEDS ?= 0
HELDOUT_DATA := build/heldout
results-heldout: $(STAMP)
	$(BIN)/python benchmarks/heldout/make_tasks.py --out $(HELDOUT_DATA)
	set -e; for t in $(HELDOUT_TASKS); do for s in $(HELDOUT_SEEDS); do \
	  d=results/heldout/$$t-pntm-s$$s; data=$(HELDOUT_DATA)/$$t; \
	  $(BIN)/pntm train --data $$data/train.jsonl --task $$t --model pntm --seed $$s \
	    --threads 1 --out $$d; \
	  if ! grep -qs '"file": "'$$data/test.jsonl'"' $$d/eval.json; then \
	    $(BIN)/pntm eval $$d --split validation --data $$data/validation.jsonl; \
	    $(BIN)/pntm eval $$d --data $$data/test.jsonl; fi; \
	done; done
	$(BIN)/pntm report results/heldout --out RESULTS.md --no-plots

# results/benchmark.json, one plot per task in results/plots/ and the results/grid tables of
# RESULTS.md, from the eval.json files of the grid (`pntm sweep ... --out results/grid`).
# Trains nothing; unfinished runs are listed and left out.
report: $(STAMP)
	$(BIN)/pntm report results/grid --out RESULTS.md --json results/benchmark.json \
	  --plots results/plots

clean:
	rm -rf $(VENV) runs build src/*.egg-info
