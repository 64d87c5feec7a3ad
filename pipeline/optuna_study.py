"""An Optuna study of the search's hyperparameters that spans jobs, and its products.

One study per sigma (``<study_name or name>-sigma<s>``), driven by Ray Tune's ``OptunaSearch``.
By default the study lives in the run folder (``OUTPUT_DIR/NAME/optuna/studies.db``, SQLite),
so a state bundle carries it (:mod:`.state`): a run cut by a job's time limit continues its
study on the next machine.

How a cut study continues. On a fresh machine Tune's folders are gone (they hold pickles and
never travel); on the same machine its experiment is set aside (:func:`take_over`), because
``Tuner.restore`` would bring back a searcher older than the study. Either way a new Tune
experiment starts with :class:`ResumableOptunaSearch` over the same study storage: it first
*replays* the study's trials, each under its own Optuna trial number and with its own
parameters -

* a trial the study holds as finished keeps its value; it is replayed only so that Tune gets
  its last result and checkpoint back (its imported final checkpoint: the trainable reports
  it at once, building neither data nor supernet) and the stage writes its genotype as for any
  trial. Such a replay takes no GPU, holds no slot of ``optuna.max_concurrent``
  (:class:`SearchingLimit`) and comes right after the trials that continue a checkpoint, so on
  a one-GPU machine it runs beside the ones that search (each costs Tune ~15 s of starting and
  stopping a trial process: on the GPU, 72 s for 5 replays);
* a trial the study holds as RUNNING (cut) continues from its latest checkpoint (imported as
  ``imported/search/sigma<s>-seed<k>-trial<n>/search.pt``) and, when it ends, is told to the
  study under its own number (``Study.tell`` takes a trial number), so it is never sampled
  again; a cut trial that had not checkpointed yet starts again with the same parameters -

and only then asks Optuna for new trials, so the study never holds more than
``optuna.num_samples`` trials. Optuna has no API to reopen a RUNNING trial for ``ask``, and
Ray's ``OptunaSearch`` knows only the trials it asked itself; this subclass adds only that
replay. Its sampler is seeded with ``seed + trials already in the study``: a fresh sampler
with the first job's seed would draw the first job's parameters again. So a resumed study
samples other (equally seeded, reproducible) parameters than an uninterrupted one would.

An explicit ``optuna.storage`` outside the run folder (a study several jobs share) is used as
it is: its trials are not replayed (another job may own them) and it does not travel.

At the end of the search the stage writes, per sigma, ``optuna/importance-sigma<s>.json``
(``optuna.importance.get_param_importances``, fANOVA, seeded), ``.png`` (a bar chart) and
``optuna/trials-sigma<s>.csv`` (``Study.trials_dataframe``); the pipeline logs them to the
search stage's MLflow run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.util import unflatten_dict

from hinas_core.fsutil import atomic_file

from .experiment import ExperimentConfig
from .search_stage import ENDED_TRIAL, OPTUNA_TRIAL

STUDY_DIR = "optuna"
STUDY_FILE = "studies.db"


def own_storage(exp: ExperimentConfig) -> bool:
    """Whether the study lives in the run folder (no explicit ``optuna.storage``): it travels."""
    return exp.optuna is not None and not exp.optuna.storage


def study_path(exp: ExperimentConfig) -> Path:
    """Where the run folder's own study lives (used unless ``optuna.storage`` is set)."""
    return exp.experiment_dir / STUDY_DIR / STUDY_FILE


def storage_url(exp: ExperimentConfig) -> str:
    if exp.optuna.storage:
        return exp.optuna.storage
    return f"sqlite:///{study_path(exp)}"


def study_name(exp: ExperimentConfig, sigma: float) -> str:
    return (exp.optuna.study_name or exp.name) + f"-sigma{sigma:g}"


def _storage(exp: ExperimentConfig):
    import optuna

    if own_storage(exp):
        (exp.experiment_dir / STUDY_DIR).mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(storage_url(exp))


def load_study(exp: ExperimentConfig, sigma: float):
    """The sigma's study, or None when the storage holds none yet."""
    import optuna

    try:
        return optuna.load_study(study_name=study_name(exp, sigma), storage=_storage(exp))
    except KeyError:
        return None


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that first replays given trials of its study (see the module docstring).

    ``replay``: ``[(Optuna trial number, its params, ended)]`` in the order to suggest them.
    Every suggestion carries its Optuna trial number as ``config[OPTUNA_TRIAL]``, which names the
    trial's folder, checkpoint and MLflow run across jobs; a trial whose search has ended (it only
    reports its last result) also carries ``config[ENDED_TRIAL] = True``."""

    def __init__(self, *args, replay: List[Tuple[int, Dict[str, Any], bool]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self._replay = [(int(n), dict(p), bool(ended)) for n, p, ended in replay]
        self._replayed: Dict[str, int] = {}  # Tune trial id -> Optuna trial number

    def next_is_ended(self) -> bool:
        """Whether the next suggestion replays a trial whose search has ended."""
        return bool(self._replay) and self._replay[0][2]

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if self._replay:
            number, params, ended = self._replay.pop(0)
            self._replayed[trial_id] = number
            return {**unflatten_dict(params), OPTUNA_TRIAL: number, **({ENDED_TRIAL: True} if ended else {})}
        config = super().suggest(trial_id)
        # OptunaSearch keeps the trial it asked for each Tune trial (a subclass may read it).
        return None if config is None else {**config, OPTUNA_TRIAL: self._ot_trials[trial_id].number}

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        # A replayed trial's intermediate values are left out: they only serve pruning (none
        # here), and the new experiment's iteration count starts again at 1.
        if trial_id not in self._replayed:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if trial_id not in self._replayed:
            return super().on_trial_complete(trial_id, result, error)
        import optuna

        number = self._replayed[trial_id]  # (_ot_study: OptunaSearch's study, set up in its __init__)
        trial = next(t for t in self._ot_study.get_trials(deepcopy=False) if t.number == number)
        if trial.state.is_finished():
            return  # finished in an earlier job: its value stands
        value = (result or {}).get(self.metric)
        if value is None:
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
            self._ot_study.tell(number, state=state)
        else:
            self._ot_study.tell(number, value)


class SearchingLimit(ConcurrencyLimiter):
    """``optuna.max_concurrent`` counts the trials that search: a replay of an ended trial (it
    only reports its last result, on no GPU) is suggested whatever the limit and holds no slot.
    With Ray's ``ConcurrencyLimiter`` such replays held slots, so a new trial was sampled only
    once they had left: on one H200, 35 s with the GPU idle for the last four replays."""

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if self.searcher.next_is_ended():
            return self.searcher.suggest(trial_id)
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if trial_id in self.live_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)  # a replay: no slot


def take_over(exp: ExperimentConfig, tune_dir: Path) -> None:
    """Continue a study cut on this machine as one moved to another: each trial's latest
    checkpoint in the Tune experiment ``tune_dir`` becomes its imported checkpoint, and the
    experiment goes; the new one replays the study (:func:`optuna_searcher`).

    Not ``Tuner.restore``: it brings back the searcher as Tune last saved it, which can be older
    than the study - a driver killed after Optuna started a trial restores a sampler that asks
    for that trial again, and the study then holds a RUNNING orphan and one trial too many."""
    import shutil

    from .state import imported_file, latest_checkpoints

    for label, (_, path) in latest_checkpoints(exp, "search").items():
        target = imported_file(exp, "search", label)
        if path != target:
            with atomic_file(target) as tmp:
                shutil.copyfile(path, tmp)
    shutil.rmtree(tune_dir)


def _state_on_disk(exp: ExperimentConfig, sigma: float, trial) -> str:
    """The study trial's checkpoint in the run folder: "ended" (of a search that has ended and
    that the study holds as finished), "cut" (any other) or "none"."""
    from hinas_core.models import ModelError, load_tensors
    from hinas_core.search import search_ended

    from .search_stage import trial_label
    from .state import imported_file

    path = imported_file(exp, "search", f"{trial_label(sigma, exp.seeds[0])}-trial{trial.number}")
    if not path.is_file():
        return "none"
    try:
        ended = search_ended(load_tensors(path, "search checkpoint"), trial.params.get("hp/max_epochs", exp.search.max_epochs))
    except (ModelError, KeyError, TypeError, ValueError):
        ended = False  # damaged: the trial runs as a cut one, whose trainable says what is wrong
    return "ended" if ended and trial.state.is_finished() else "cut"


def optuna_searcher(exp: ExperimentConfig, sigma: float, space, metric: str):
    """The search stage's searcher for one sigma: seeded, its study persistent, replaying the
    trials already in the run folder's study (a resumed run)."""
    cfg = exp.optuna
    replay: List[Tuple[int, Dict[str, Any], bool]] = []
    if own_storage(exp):
        study = load_study(exp, sigma)
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            state = {t.number: _state_on_disk(exp, sigma, t) for t in trials}
            # First the trials that continue a checkpoint: they search on, on the GPU; then the
            # ended ones, which only report their last result, on no GPU
            # (search_stage.TrialResources), beside them; then those cut before any checkpoint.
            order = {"cut": 0, "ended": 1, "none": 2}
            replay = [(t.number, t.params, state[t.number] == "ended")
                      for t in sorted(trials, key=lambda t: (order[state[t.number]], t.number))]
    return ResumableOptunaSearch(space=space, metric=metric, mode="max", seed=cfg.seed + len(replay),
                                 storage=_storage(exp), study_name=study_name(exp, sigma), replay=replay)


# ---- the study's products -----------------------------------------------------------------------
def write_study_products(exp: ExperimentConfig) -> List[Path]:
    """Per sigma: the parameter importances (JSON and a bar chart) and the trials (CSV), under
    ``OUTPUT_DIR/NAME/optuna/``. Importances need two finished trials that differ; with fewer
    the JSON says why. Returns the files written."""
    import optuna

    out = exp.experiment_dir / STUDY_DIR
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    for sigma in exp.data.sigmas:
        study = load_study(exp, sigma)
        if study is None:
            continue
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        info: Dict[str, Any] = {"study": study.study_name, "storage": storage_url(exp), "trials": len(study.trials),
                                "complete": len(done), "metric": "es_best_psnr", "evaluator": "fANOVA",
                                "seed": exp.optuna.seed}
        if done:
            best = max(done, key=lambda t: t.value)
            info["best"] = {"number": best.number, "value": best.value, "params": best.params}
        info["importance"] = {}
        if len(done) < 2:  # Optuna answers even for one trial, with importances that mean nothing
            info["importance_note"] = f"importances need at least 2 complete trials; the study has {len(done)}"
        else:
            try:
                importance = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=exp.optuna.seed))
                info["importance"] = {k: float(v) for k, v in importance.items()}
            except (ValueError, RuntimeError) as exc:  # e.g. no parameter varied
                info["importance_note"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        stem = f"sigma{sigma:g}"
        path = out / f"importance-{stem}.json"
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(info, indent=2, default=str))
        written.append(path)
        if info["importance"]:
            written.append(_importance_figure(info, out / f"importance-{stem}.png"))
        path = out / f"trials-{stem}.csv"
        with atomic_file(path) as tmp:
            study.trials_dataframe().to_csv(tmp, index=False)
        written.append(path)
    return written


def _importance_figure(info: Dict[str, Any], path: Path) -> Path:
    from .figures import Figure, save_png

    names = list(info["importance"])[::-1]
    fig = Figure(figsize=(6, 0.5 + 0.45 * len(names)))
    ax = fig.add_subplot()
    ax.barh([n.removeprefix("hp/") for n in names], [info["importance"][n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for the best validation PSNR (fANOVA)")
    ax.set_title(f"{info['study']}: {info['complete']} complete trial(s)")
    fig.tight_layout()
    return save_png(fig, path)


def study_products(exp: ExperimentConfig) -> List[Path]:
    """The product files :func:`write_study_products` left in the run folder."""
    folder = exp.experiment_dir / STUDY_DIR
    return sorted(p for p in folder.glob("*-sigma*.*") if p.suffix in (".json", ".png", ".csv")) if folder.is_dir() else []


def log_study(tracker, run_id: str, exp: ExperimentConfig) -> None:
    """The study's products as artifacts ``optuna/...`` of the search stage's MLflow run."""
    for path in study_products(exp):
        tracker.log_artifact(run_id, path, STUDY_DIR)
