#!/usr/bin/env bash
# One stretch of a long run on a fresh, time-limited machine (a 10-minute GPU job, a SLURM
# allocation, a spot instance): bring the run's state in, run for at most SECONDS, stop
# gracefully, take the state out. The next stretch, on any machine, continues from STATE_OUT.
#
#   scripts/gpu_stretch.sh CONFIG STATE_IN STATE_OUT SECONDS [hinas --set options...]
#
#   STATE_IN   a bundle from `hinas state export` (skipped when it holds no manifest.json:
#              the first stretch starts the run)
#   STATE_OUT  where this stretch's bundle goes (compact: supernets in bf16, see README)
#   SECONDS    when to send the first Ctrl-C: running trials then reach their next
#              checkpoint (search: one epoch; retraining: retrain.report_every iterations)
#              and the run stops; GRACE_S later (default 150) it is killed outright.
# Exit status: 0 when the run finished in this stretch, 3 when it was cut (state exported),
# anything else on an error. Uses `hinas` from PATH (or $HINAS, e.g. "python -m hinas.pipeline.cli").
set -uo pipefail
if [ $# -lt 4 ]; then sed -n '2,16p' "$0" >&2; exit 2; fi
CONFIG=$1 STATE_IN=$2 STATE_OUT=$3 SECONDS_=$4; shift 4
HINAS=${HINAS:-hinas}
if [ -f "$STATE_IN/manifest.json" ]; then
  $HINAS state import "$CONFIG" --from "$STATE_IN" --overwrite "$@" || exit $?
fi
timeout -s INT -k "${GRACE_S:-150}" "$SECONDS_" $HINAS run "$CONFIG" --resume "$@"
rc=$?
case $rc in
  0) echo "[stretch] the run finished" ;;
  124|130|137|143) echo "[stretch] the run was cut after ${SECONDS_} s (exit $rc); exporting its state" ;;
  *) echo "[stretch] the run failed (exit $rc); exporting what it has" ;;
esac
$HINAS state export "$CONFIG" --out "$STATE_OUT" --compact "$@" || exit $?
[ $rc -eq 0 ] && exit 0
case $rc in 124|130|137|143) exit 3 ;; *) exit $rc ;; esac
