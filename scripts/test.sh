#!/usr/bin/env bash
# Set up (idempotently) and run the test suite on CPU. Extra arguments go to pytest.
# The tests run in HINAS_TEST_WORKERS pytest-xdist processes (default 2), one test file per
# process at a time: the end-to-end tests spend much of their time in single-threaded imports
# and Ray start-ups, so two processes on 2 cores finish sooner (docs/RESULTS.md). 0 runs them
# in this process; `-n N` among the arguments overrides it. The files holding `slow` tests go
# first (tests/conftest.py), in that order: xdist's own reordering is off.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" test
cd "$ROOT"
# No GPU is needed or used by the tests; keep them off any GPU that happens to be there.
export CUDA_VISIBLE_DEVICES="" HINAS_TEST=1
exec "$VENV/bin/pytest" -n "${HINAS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
