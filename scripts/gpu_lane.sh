#!/usr/bin/env bash
# Several runs one after another until a deadline, each as a stretch (scripts/gpu_stretch.sh),
# for a queue of experiments that spans time-limited machines (issue #15's ablations).
#
#   scripts/gpu_lane.sh STATE_DIR END CONFIG... [-- hinas --set options for every run]
#
#   STATE_DIR  one bundle per run, STATE_DIR/NAME (NAME: the config's file name without .yaml),
#              replaced after each stretch; STATE_DIR/NAME.done once the run finished
#   END        the deadline, in seconds since the epoch (date +%s): lanes started together
#              (one per GPU, each with its own RAY_TMPDIR) share it. A run starts only with
#              at least 90 s left; the one running at END is cut gracefully (GRACE_S later killed).
#   CONFIG...  in order: a run that edits another's genotype (derive.from_genotype) comes after it.
#              A finished run whose folder is missing (a fresh machine) is imported again, so
#              that later runs find its products.
# Exit status: 0 when every run finished, 3 when the deadline cut the lane, 1 when a run failed
# (the others still run). Uses `hinas` from PATH (or $HINAS, e.g. "python -m hinas.pipeline.cli")
# and $PYTHON (default python3) to read the configs.
#
# One lane per GPU: on one H200, three hinas drivers at once (a stretch and two lanes) slowed
# each other's evaluate stage from 5-22 s a model to over 430 s (docs/RESULTS.md, session 10).
set -uo pipefail
if [ $# -lt 3 ]; then sed -n "2,21p" "$0" >&2; exit 2; fi
STATE_DIR=$1 END=$2; shift 2
CONFIGS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do CONFIGS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
HINAS=${HINAS:-hinas}
PYTHON=${PYTHON:-python3}  # the interpreter hinas is installed in (reads the configs)
FOLDER_OF='import sys; from hinas.pipeline.experiment import load_experiment; a = sys.argv[2:]
print(load_experiment(sys.argv[1], [v for k, v in zip(a, a[1:]) if k == "--set"]).experiment_dir)'
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$STATE_DIR"
failed=0
for cfg in "${CONFIGS[@]}"; do
  name=$(basename "$cfg" .yaml)
  # the run's folder, OUTPUT_DIR/NAME, as hinas reads the config and the --set options
  if ! folder=$($PYTHON -c "$FOLDER_OF" "$cfg" "$@"); then
    echo "[lane] $name: the config does not load"; failed=1; continue
  fi
  if [ -f "$STATE_DIR/$name.done" ]; then
    if [ ! -d "$folder" ] && [ -f "$STATE_DIR/$name/manifest.json" ]; then
      echo "[lane] $name finished earlier: importing its products"
      $HINAS state import "$cfg" --from "$STATE_DIR/$name" "$@" || failed=1
    fi
    continue
  fi
  left=$((END - $(date +%s)))
  if [ $left -lt 90 ]; then echo "[lane] $left s left: $name and the runs after it wait"; exit 3; fi
  # on a machine that still holds the run's folder, resume from it rather than from the bundle
  state_in=$STATE_DIR/$name
  [ -d "$folder" ] && state_in=$STATE_DIR/$name.none
  echo "[lane] $name: a stretch of at most $left s"
  bash "$HERE/gpu_stretch.sh" "$cfg" "$state_in" "$STATE_DIR/$name.new" "$left" "$@"
  rc=$?
  if [ -f "$STATE_DIR/$name.new/manifest.json" ]; then
    rm -rf "$STATE_DIR/$name" && mv "$STATE_DIR/$name.new" "$STATE_DIR/$name"
  fi
  case $rc in
    0) touch "$STATE_DIR/$name.done"; echo "[lane] $name finished" ;;
    3) echo "[lane] $name was cut at the deadline"; exit 3 ;;
    *) echo "[lane] $name failed (exit $rc)"; failed=1 ;;
  esac
done
exit $failed
