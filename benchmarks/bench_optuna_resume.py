"""How soon a resumed Optuna study gets back to searching: the wait before its first new trial.

A study resumed from its bundle replays every trial it holds (an ended trial only reports its
last result, on no GPU: ~15 s of Tune starting and stopping a trial process) before Optuna is
asked for new ones. The bundle of RUN is imported into a fresh folder, its search summary
removed if it has one (so the search stage runs again, replaying the study), and ``hinas run
--resume`` runs with ``optuna.num_samples`` raised by ``--extra`` for ``--seconds``, then is
stopped (SIGINT). The bundle must hold its ended trials' checkpoints (one cut during its search:
a finished run's bundle keeps only its products, and its trials would search again).
Printed: when each new trial started and each Tune trial's first and last report, counted from
the run's start, and, where ``nvidia-smi`` is there, the share of the run's half-second
samples with the GPU busy.

    python benchmarks/bench_optuna_resume.py tune_configs/optuna_sigma50.yaml \\
        campaign/ablations/optuna_sigma50 --seconds 150 --json OUT.json -- \
        $(grep -v '^#' tune_configs/reduced_budget.args)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

HINAS = [sys.executable, "-m", "hinas.pipeline.cli"]


def gpu_sampler(path: Path):
    """``nvidia-smi`` writing the GPU's utilisation every 0.5 s to ``path`` (None without a GPU)."""
    if not shutil.which("nvidia-smi"):
        return None
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                             "-lms", "500"], stdout=path.open("w"), stderr=subprocess.DEVNULL)


def timeline(exp, start: float):
    """Per Tune trial of the run: its Optuna number, whether it replayed an ended search, and
    its first and last report, in seconds from the run's start (from Tune's result.json)."""
    rows = []
    for path in sorted(exp.experiment_dir.glob("search-*/*/result.json")):
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if results:
            config = results[0].get("config", {})
            rows.append({"trial": config.get("optuna_trial"), "ended": bool(config.get("ended_trial")),
                         "reports": len(results), "first_s": round(results[0]["timestamp"] - start, 1),
                         "last_s": round(results[-1]["timestamp"] - start, 1)})
    return sorted(rows, key=lambda r: r["first_s"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the study's experiment config")
    ap.add_argument("bundle", help="a state bundle of that run (`hinas state export`)")
    ap.add_argument("--extra", type=int, default=2, help="new trials to ask for beyond the study's")
    ap.add_argument("--seconds", type=float, default=150, help="how long the resumed run may run")
    ap.add_argument("--json", default="", help="also write the figures here")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.sets = argv[cut + 1:]  # the run's --set options

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.optuna_study import load_study

    work = Path(tempfile.mkdtemp(prefix="hinas-bench-optuna-"))
    sets = [*args.sets, "--set", f"output_dir={work}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    subprocess.run([*HINAS, "state", "import", args.config, "--from", args.bundle, *sets], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    exp = load_experiment(args.config, [s for s in sets if s != "--set"])
    sigma = exp.data.sigmas[0]
    held = len(load_study(exp, sigma).get_trials(deepcopy=False))
    (exp.experiment_dir / "search_summary.json").unlink(missing_ok=True)

    sampler = gpu_sampler(work / "gpu.csv")
    start = time.time()
    run = subprocess.Popen([*HINAS, "run", args.config, *sets, "--set", f"optuna.num_samples={held + args.extra}",
                            "--resume"], env=env, stdout=(work / "run.log").open("w"), stderr=subprocess.STDOUT)
    try:
        run.wait(timeout=args.seconds)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=300)
    ran = time.time() - start
    if sampler:
        sampler.terminate()

    trials = load_study(exp, sigma).get_trials(deepcopy=False)
    new = {t.number: round(t.datetime_start.timestamp() - start, 1) for t in trials[held:] if t.datetime_start}
    busy = None
    if sampler:
        samples = [int(x) for x in (work / "gpu.csv").read_text().split() if x.isdigit()]
        busy = round(sum(s > 0 for s in samples) / max(len(samples), 1), 3)
    result = {"trials_held": held, "new_trial_started_s": new, "ran_s": round(ran, 1), "gpu_busy_share": busy,
              "timeline": timeline(exp, start), "run_log": str(work / "run.log")}
    print(json.dumps(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
