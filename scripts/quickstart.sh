#!/usr/bin/env bash
# Set up (idempotently) and run the main job on CPU, offline: the whole hinas pipeline on the
# embedded sample images - search (three sigma trials at once on a local Ray, each stopped by
# the paper's early-stopping rule) -> derive -> retrain (with a DnCNN baseline) -> evaluate
# (with BM3D) -> report. Results go to runs/quickstart/; a rerun starts again from scratch.
# Extra arguments go to `hinas run` (e.g. --set data.sigmas=[30]).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" ""  # no extras (and not this script's arguments)
cd "$ROOT"
exec hinas run tune_configs/quickstart.yaml --overwrite "$@"
