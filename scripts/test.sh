#!/usr/bin/env bash
# Set up (idempotently) and run the test suite on CPU. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" test
cd "$ROOT"
# No GPU is needed or used by the tests; keep them off any GPU that happens to be there.
export CUDA_VISIBLE_DEVICES="" HINAS_TEST=1
exec "$VENV/bin/pytest" "$@"
