# `make demo` and `make test` create .venv on first use, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	# Without a GPU, take the CPU build of PyTorch (small and local here); with one, let pip choose.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[test,plot]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/pntm train --task parity --model pntm --out runs/demo-parity --seed 0
	$(BIN)/pntm eval runs/demo-parity --lengths 1-40:13,41,50,64,80,100,128,160,200,256,320,400,500

clean:
	rm -rf $(VENV) runs build src/*.egg-info
