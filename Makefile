# Two entry points (see README): `make run` and `make test`. Both create .venv
# from pyproject.toml first, so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean sysdeps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# System packages the tests use as real peers: libsixel's sixel2png decodes the
# console's sixel images; Open MPI, Slurm (with munge), OpenSSH and iproute2 (network
# namespaces as "other hosts") run the launcher tests
# (tests/parallel/test_launch_*.py start their daemons themselves, by pid); tcpdump captures
# the namespaces' traffic in tests/parallel/test_security_netns.py. Installed with
# apt-get (as root, or through sudo), with one apt-get update, only if one is missing.
SYSDEPS := libsixel-bin openmpi-bin libopenmpi-dev slurm-wlm munge openssh-server openssh-client \
  iproute2 tcpdump
sysdeps:
	@for tool in sixel2png mpiexec slurmctld slurmd munged sshd ssh ip tcpdump; do \
	  command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || missing=1; \
	done; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $(SYSDEPS) >/dev/null; }

run: $(STAMP)
	$(BIN)/loom

lint: $(STAMP)
	$(BIN)/ruff check kernel shell parallel tests
	$(BIN)/ruff format --check kernel shell parallel tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) sysdeps
	$(BIN)/python -m pytest

test: sysdeps lint typecheck unit  # sysdeps first: the wheel of mpi4py needs Open MPI

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
