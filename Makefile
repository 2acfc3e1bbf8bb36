# Two entry points (see README): `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fewzero-installed

# Use the shared real data beside the checkout when it is there and the user has not chosen a data root.
ifneq ($(wildcard ../shared/data),)
export FEWZERO_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test benchmark-omniglot clean-venv

$(STAMP): pyproject.toml scripts/install_learn2learn.sh
	$(PYTHON) -m venv $(VENV)
	# torch is pinned here (not in pyproject) to the CPU build on this machine; a range would pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev,text]'
	bash scripts/install_learn2learn.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fewzero eval --method protonet

test: $(STAMP)
	# two test processes of one torch thread each fill the 2 cores (one process with 2 threads leaves one idle)
	OMP_NUM_THREADS=1 FEWZERO_REQUIRE_L2L=1 $(BIN)/python -m pytest -q -n 2 --durations=15

benchmark-omniglot: $(STAMP)
	$(BIN)/python benchmarks/omniglot.py --method protonet

clean-venv:
	rm -rf $(VENV)
