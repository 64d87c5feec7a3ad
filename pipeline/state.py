"""Run state that moves between machines: ``hinas state export`` and ``hinas state import``.

A run cut by a time limit (a 10-minute GPU job, a SLURM limit, a spot instance taken away)
continues on *another* machine: ``export`` packs what ``hinas run CONFIG --resume`` needs from
``OUTPUT_DIR/NAME/`` into a *bundle* folder of small files, ``import`` unpacks it there on the
next machine. A bundle is::

    DIR/manifest.json   format, version, experiment, config (and its hash), hinas version,
                        and per file: path in the run folder, kind, size, sha256, its parts
    DIR/0000.part ...   the files' bytes, each file cut into parts of at most --max-file-mib;
                        small files share a part, and the products, each model file and the
                        checkpoints start parts of their own (unchanged files, unchanged parts)

What it carries: the finished products (genotypes with their history, search summary, derived
genotypes, model files, evaluation tables and figures, report) and, for work not finished,
the latest checkpoint of each search trial and retraining job (weights, optimisers, RNGs,
epoch/iteration, search history, early-stop counters: the files the trainables write with
``torch.save``), and an Optuna study kept in the run folder (``optuna/studies.db``, SQLite:
JSON and numbers, no pickles) with its products (:mod:`.optuna_study`). It never carries Ray
Tune's experiment folders: they hold pickles, which load code. An imported checkpoint lands in
``imported/<stage>/<label>/``; with no Tune experiment to restore, the stage starts a new one
and each trial starts from its imported checkpoint (:func:`resume_file`, the trainables' one
hook).

Import trusts nothing in the bundle: the manifest's format and version, every path (relative,
inside the run folder, of a kind hinas writes, never a Tune folder), every part (a plain file,
its size and sha256) and every checkpoint and model (loaded weights-only: a pickle of anything
but tensors and plain data is refused without running it). It builds the run folder in a
hidden sibling and moves it into place in one rename, so a refused or cut import leaves
nothing behind.

MLflow is not in the bundle: the resumed pipeline logs the stages finished before the cut
again from their products (curves from ``history.json``, models, evaluation) into the store
of the machine it runs on. Lost with a local store: the first machine's run records.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from hinas import __version__
from hinas_core.models import ModelError, load_tensors
from hinas_core.search import ARCH_KEYS, search_ended, without_supernet

from .experiment import ExperimentConfig

FORMAT = "hinas-state"
VERSION = 2  # 2: small files share parts (a part holds segments of several files); 1 is still read
READS = (1, 2)
MANIFEST = "manifest.json"
IMPORTED = "imported"
DEFAULT_PART_MIB = 16
PART_NAME = re.compile(r"^\d{4,}\.part$")
# Config keys that may differ between the machines without changing what the run computes.
MACHINE_KEYS = ("output_dir", "resources")
# stage -> (Tune experiment folder, checkpoint file name, progress counter in the checkpoint)
STAGES = {"search": ("search", "search.pt", "epoch"), "retrain": ("retrain", "retrain.pt", "iteration")}


class StateError(ValueError):
    """A bundle cannot be written or is refused; the message is one line naming why."""


# ---- what a run folder holds --------------------------------------------------------------------
def kind_of(path: str) -> Optional[str]:
    """The kind of file at ``path`` (relative to the run folder), or None if a bundle may not
    carry it. Decided from the path alone: a manifest's claim is checked against this."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if len(parts) == 4 and parts[0] == IMPORTED and parts[1] in STAGES and name == STAGES[parts[1]][1]:
        return f"{parts[1]}-checkpoint"
    if len(parts) == 1 and name in ("search_summary.json", "search_summary.md", "search_inputs.json"):
        return "search-summary"
    if len(parts) == 1 and name == "report.md":
        return "report"
    if len(parts) == 3 and parts[0] == "genotypes" and name in ("genotype.json", "history.json"):
        return "genotype" if name == "genotype.json" else "search-history"
    if len(parts) == 3 and parts[0] == "derived" and name == "genotype.json":
        return "derived-genotype"
    if len(parts) == 3 and parts[0] == "models" and name == "model.pt":
        return "model"
    if len(parts) == 2 and parts[0] == "evaluation" and name.endswith((".parquet", ".json", ".png")):
        return "evaluation"
    if len(parts) == 2 and parts[0] == "optuna":  # the run's own Optuna study, and its products
        if name == "studies.db":
            return "optuna-study"
        if re.fullmatch(r"(importance-sigma[\d.]+\.(json|png))|(trials-sigma[\d.]+\.csv)", name):
            return "optuna-summary"
    return None


def config_identity(exp: ExperimentConfig) -> Dict[str, Any]:
    """The config as it decides the run's results: paths and resources left out."""
    d = exp.to_dict()
    for key in MACHINE_KEYS:
        d.pop(key, None)
    d["data"] = {k: v for k, v in d["data"].items() if k != "root"}
    if d["derive"]["from_genotype"]:  # a path under output_dir names the same file on every machine
        d["derive"]["from_genotype"] = d["derive"]["from_genotype"].replace(exp.output_dir, "{output_dir}")
    return json.loads(json.dumps(d, default=str))


def config_hash(exp: ExperimentConfig) -> str:
    return hashlib.sha256(json.dumps(config_identity(exp), sort_keys=True).encode()).hexdigest()


def tune_dirs(exp: ExperimentConfig) -> List[str]:
    from .search_stage import search_dirs

    return [*search_dirs(exp), STAGES["retrain"][0]]


def imported_file(exp: ExperimentConfig, stage: str, label: str) -> Path:
    return exp.experiment_dir / IMPORTED / stage / label / STAGES[stage][1]


def has_imported(exp: ExperimentConfig, stage: str) -> bool:
    return any((exp.experiment_dir / IMPORTED / stage).glob(f"*/{STAGES[stage][1]}"))


@contextlib.contextmanager
def resume_file(tune_checkpoint, exp: ExperimentConfig, stage: str, label: str) -> Iterator[Optional[Path]]:
    """The checkpoint file a trial resumes from: Tune's own (a restored experiment), else the one
    imported for its label from a bundle, else None (a fresh start). The caller loads it."""
    if tune_checkpoint is not None:
        with tune_checkpoint.as_directory() as d:
            yield Path(d) / STAGES[stage][1]
        return
    path = imported_file(exp, stage, label)
    yield path if path.is_file() else None


# ---- export ---------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def latest_checkpoints(exp: ExperimentConfig, stage: str) -> Dict[str, Tuple[int, Path]]:
    """Per trial label, the checkpoint of the stage that went furthest: from Tune's trial folders
    (named ``<label>-<trial id>`` by the stages; Tune's own files, pickles among them, are not
    read) or from an earlier import."""
    folder, filename, counter = STAGES[stage]
    found: Dict[str, Tuple[int, Path]] = {}
    candidates = [(p.parent.name, p) for p in (exp.experiment_dir / IMPORTED / stage).glob(f"*/{filename}")]
    # An Optuna trial's folder is named after its number in the study (``...-trial3-<id>``), so
    # its checkpoint finds its trial again when the study resumes (pipeline/optuna_study.py).
    for tune_dir in ([folder] if stage == "retrain" else tune_dirs(exp)[:-1]):
        candidates += [(p.parent.parent.name.rsplit("-", 1)[0], p)
                       for p in (exp.experiment_dir / tune_dir).glob(f"*/checkpoint_*/{filename}")]
    for label, path in candidates:
        try:
            progress = int(load_tensors(path, f"{stage} checkpoint")[counter])
        except (ModelError, KeyError, TypeError, ValueError):
            continue  # a damaged or foreign checkpoint: an older one may still do
        if label not in found or progress > found[label][0]:
            found[label] = (progress, path)
    return found


def _bf16(weights: Dict[str, Any], keep: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Float32 weights in bf16; BatchNorm's running statistics, integers and ``keep`` as they are."""
    return {k: v.to(torch.bfloat16) if v.dtype == torch.float32 and k not in keep and "running_" not in k else v
            for k, v in weights.items()}


def compact_search_state(state: Dict[str, Any]) -> Dict[str, Any]:
    """A search checkpoint made about 4x smaller: supernet weights in bf16 (alpha, beta and the
    BatchNorm statistics stay fp32) and no SGD momentum (rebuilt from the next steps). An ended
    search keeps no supernet at all (:func:`hinas_core.search.without_supernet`): only its
    products are needed, and a study's dozen ended trials at ~12 MB each would not travel."""
    if search_ended(state):
        return without_supernet(state)
    return {**state, "model": _bf16(state["model"], keep=ARCH_KEYS), "w_opt": {**state["w_opt"], "state": {}}}


def compact_retrain_state(state: Dict[str, Any]) -> Dict[str, Any]:
    """A retraining checkpoint about 6x smaller: no optimiser moments (the trainer re-estimates
    them when it resumes, :meth:`hinas_core.retrain.Trainer.load_state_dict`) and the weights in
    bf16 (BatchNorm statistics fp32). Rounding the campaign's checkpoints so moved their
    validation PSNR by -0.018 to +0.004 dB (docs/RESULTS.md), within what their curves swing by
    between validations. A job in its final anneal (``anneal_from`` set), whose learning rate
    falls to ``lr_min``, keeps fp32 weights: small steps would not make the rounding up."""
    model = state["model"] if state.get("anneal_from") is not None else _bf16(state["model"])
    return {**state, "model": model, "opt": {**state["opt"], "state": {}}}


def expand_state(state: Dict[str, Any]) -> Dict[str, Any]:
    """A compact search or retraining checkpoint back in the trainables' format (weights fp32 again)."""
    return {**state, "model": {k: v.float() if v.dtype == torch.bfloat16 else v for k, v in state["model"].items()}}


def _entries(exp: ExperimentConfig, compact: bool) -> Tuple[List[Tuple[str, str, bytes | Path]], List[str]]:
    """``[(path in the run folder, kind, its bytes or its file)]`` and notes on what is left out."""
    from .search_stage import finished_search

    root = exp.experiment_dir
    skip_top = {*tune_dirs(exp), IMPORTED}
    entries: List[Tuple[str, str, bytes | Path]] = []
    notes: List[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in skip_top]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            kind = kind_of(rel)
            if name.startswith(".") or path.is_symlink():
                continue  # temporaries, locks; a link is not the run's own file
            if kind is None:
                notes.append(f"left out (not a file hinas resumes from): {rel}")
            else:
                entries.append((rel, kind, path))
    search_done = finished_search(exp) is not None
    for stage in STAGES:
        if stage == "search" and search_done:
            continue  # the genotypes and summary are the product; the trials need not run again
        for label, (progress, path) in sorted(latest_checkpoints(exp, stage).items()):
            if stage == "retrain" and (root / "models" / label / "model.pt").is_file():
                continue
            rel = f"{IMPORTED}/{stage}/{label}/{STAGES[stage][1]}"
            if compact:
                shrink = compact_search_state if stage == "search" else compact_retrain_state
                buf = io.BytesIO()
                torch.save(shrink(load_tensors(path, f"{stage} checkpoint")), buf)
                entries.append((rel, f"{stage}-checkpoint", buf.getvalue()))
            else:
                entries.append((rel, f"{stage}-checkpoint", path))
            notes.append(f"checkpoint: {stage} {label}: {STAGES[stage][2]} {progress}")
    if exp.optuna is not None and exp.optuna.storage and not search_done:
        notes.append(f"the Optuna study is in {exp.optuna.storage}, outside the run folder: not carried "
                     "(leave optuna.storage unset to keep it in the run folder)")
    return entries, notes


def _part_group(kind: str, rel: str) -> Tuple[int, str]:
    """Which files share parts: the products that stay as they are once written, then each model
    file alone, then what changes at every checkpoint. A bundle committed after every stretch
    (the campaign keeps its state in git) then repeats the parts of unchanged files byte for
    byte, and git stores those once; a model's part is the model file itself, so shipping it
    (``models/``) costs nothing more."""
    if kind == "model":
        return 1, rel
    if kind.endswith("-checkpoint") or kind == "optuna-study":
        return 2, ""
    return 0, ""


def export_state(exp: ExperimentConfig, out: Path, max_part_bytes: int = DEFAULT_PART_MIB * 2**20,
                 compact: bool = False) -> Dict[str, Any]:
    """Write the bundle of ``exp``'s run folder into ``out``, replacing a bundle already there.

    The new bundle is written beside ``out`` and swapped in by renames: ``out`` holds the old
    bundle or the new one. Returns the manifest (with ``notes`` on what it carries)."""
    out = Path(out)
    if not exp.experiment_dir.is_dir():
        raise StateError(f"nothing to export: no run folder at {exp.experiment_dir}")
    if out.resolve() == exp.experiment_dir.resolve() or exp.experiment_dir.resolve() in out.resolve().parents:
        raise StateError(f"--out {out} is inside the run folder {exp.experiment_dir}; choose a folder outside it")
    if out.exists() and (not out.is_dir() or out.is_symlink()
                         or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise StateError(f"--out {out} exists and is not a hinas state bundle; it is left alone (give a new or empty folder)")
    if max_part_bytes < 1:
        raise StateError(f"--max-file-mib: expected a positive size, got {max_part_bytes / 2**20:g}")
    from hinas.datasets.fsutil import atomic_dir

    entries, notes = _entries(exp, compact)
    entries.sort(key=lambda e: _part_group(e[1], e[0]))  # stable: in walk order within a group
    files, part_files = [], []
    with atomic_dir(out, overwrite=True) as tmp:  # the old bundle goes only once the new one is whole
        # The files' bytes run on from one part into the next, so many small files share a part:
        # a job that may bring back only a few files (e.g. 8) carries a whole bundle. A group of
        # files that change together starts a part of its own (_part_group).
        part = bytearray()
        group = None

        def close_part():
            name = f"{len(part_files):04d}.part"
            (tmp / name).write_bytes(bytes(part))
            part_files.append({"name": name, "size": len(part), "sha256": _sha256(bytes(part))})
            part.clear()

        for rel, kind, source in entries:
            this = _part_group(kind, rel)
            if part and this != group:
                close_part()
            group = this
            data = source if isinstance(source, bytes) else source.read_bytes()
            segments, start = [], 0
            while True:
                if len(part) == max_part_bytes:
                    close_part()
                chunk = data[start:start + max_part_bytes - len(part)]
                segments.append({"name": f"{len(part_files):04d}.part", "offset": len(part), "size": len(chunk),
                                 "sha256": _sha256(chunk)})
                part += chunk
                start += len(chunk)
                if start >= len(data):
                    break
            files.append({"path": rel, "kind": kind, "size": len(data), "sha256": _sha256(data), "parts": segments})
        if part or not part_files:
            close_part()
        manifest = {"format": FORMAT, "version": VERSION, "experiment": exp.name, "config_hash": config_hash(exp),
                    "config": config_identity(exp), "hinas_version": __version__, "compact": compact,
                    "max_part_bytes": max_part_bytes, "total_bytes": sum(f["size"] for f in files),
                    "part_files": part_files, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return {**manifest, "notes": notes}


def bundle_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


# ---- import ---------------------------------------------------------------------------------
def _safe_path(rel: Any) -> str:
    """``rel`` if it is a plain relative path inside the run folder, else StateError."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise StateError(f"refused: the manifest names a bad path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise StateError(f"refused: the manifest path {rel!r} points outside the run folder")
    return p.as_posix()


def read_manifest(bundle: Path, exp: ExperimentConfig) -> Dict[str, Any]:
    """The bundle's manifest, checked for format, version, experiment and config."""
    path = Path(bundle) / MANIFEST
    if not Path(bundle).is_dir():
        raise StateError(f"{bundle} is not a folder")
    if path.is_symlink() or not path.is_file():
        raise StateError(f"{bundle} is not a hinas state bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StateError(f"{path} is damaged: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"{path} is not a hinas state manifest")
    if manifest.get("version") not in READS:
        raise StateError(f"{path}: bundle format version {manifest.get('version')!r} is not supported "
                         f"(this hinas {__version__} reads versions {', '.join(map(str, READS))}); export it again with this hinas")
    if manifest.get("experiment") != exp.name:
        raise StateError(f"{bundle} holds experiment {manifest.get('experiment')!r}, not {exp.name!r} of this config")
    manifest["config_changes"] = []
    if manifest.get("config_hash") != config_hash(exp):
        theirs = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        keys, changes = config_differences(exp, theirs)
        if keys or not theirs:
            raise StateError(f"{bundle} was exported from a different config (differs in: {', '.join(keys) or 'unknown'}); "
                             "import it with the config and --set overrides of the run it came from")
        manifest["config_changes"] = changes
    if not isinstance(manifest.get("files"), list):
        raise StateError(f"{path} is damaged: no file list")
    return manifest


# Config keys that may change between stretches of a run: they act only on what is still to
# run (how often to report and validate, when to stop retraining early, the evaluation), so
# every checkpoint in a bundle keeps its meaning.
RESUMABLE_CHANGES = ("evaluate.", "retrain.report_every", "retrain.validate_every", "retrain.plateau",
                     "mlflow_experiment")
_MISSING = object()


def value_at(d: Any, dotted: str, missing: Any = _MISSING) -> Any:
    """The value at a dotted key of a nested dict (``missing`` where there is none)."""
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return missing
        d = d[key]
    return d


def config_differences(exp: ExperimentConfig, theirs: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """``(refused, allowed)``: the dotted keys in which ``exp`` differs from a bundle's config.

    Allowed: the :data:`RESUMABLE_CHANGES`, and the growth of the config schema since the bundle
    was written - a key it does not have, set here to its default; a key it has that this hinas
    no longer knows, set there to nothing (None, False, 0, empty). Everything else is refused."""
    ours = config_identity(exp)
    defaults = config_identity(ExperimentConfig(name=exp.name, output_dir=exp.output_dir))
    refused, allowed = [], []
    for key in differing_keys(ours, theirs):
        mine, other = value_at(ours, key), value_at(theirs, key)
        grown = (other is _MISSING and mine == value_at(defaults, key)) or (mine is _MISSING and not other)
        if grown or any(key == k.rstrip(".") or key.startswith(k) for k in RESUMABLE_CHANGES):
            allowed.append(key)
        else:
            refused.append(key)
    return refused, allowed


def differing_keys(ours: Dict[str, Any], theirs: Dict[str, Any], prefix: str = "") -> List[str]:
    """The dotted keys whose values differ between two nested config dicts."""
    keys = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys


def _part(bundle: Path, name: Any, where: str) -> bytes:
    if not isinstance(name, str) or not PART_NAME.match(name):
        raise StateError(f"refused: {where}: bad part name {name!r}")
    src = bundle / name
    if src.is_symlink() or not src.is_file():
        raise StateError(f"refused: part {name} of {where} is missing or not a plain file")
    return src.read_bytes()


def _read_parts(bundle: Path, manifest: Dict[str, Any]) -> Optional[Dict[str, bytes]]:
    """Version 2: every part file, each checked whole (size and sha256) once; version 1: None
    (each file's parts are whole part files, checked as they are read)."""
    if manifest["version"] == 1:
        return None
    table = manifest.get("part_files")
    if not isinstance(table, list):
        raise StateError("refused: the manifest has no part table")
    parts = {}
    for p in table:
        name = p.get("name") if isinstance(p, dict) else None
        data = _part(bundle, name, "the bundle")
        if len(data) != p.get("size"):
            raise StateError(f"refused: part {name} is truncated or padded ({len(data)} bytes, the manifest says {p.get('size')})")
        if _sha256(data) != p.get("sha256"):
            raise StateError(f"refused: part {name} does not match its sha256 (damaged or altered)")
        parts[name] = data
    return parts


def _assemble(bundle: Path, entry: Any, parts: Optional[Dict[str, bytes]]) -> Tuple[str, str, bytes]:
    """Check one manifest entry and its segments: ``(path in the run folder, kind, the file's bytes)``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("parts"), list):
        raise StateError("refused: a manifest entry is damaged")
    rel = _safe_path(entry.get("path"))
    kind = kind_of(rel)
    if kind is None or kind != entry.get("kind"):
        raise StateError(f"refused: {rel!r} is not a file a hinas run folder holds (kind {entry.get('kind')!r})")
    chunks = []
    for seg in entry["parts"]:
        name = seg.get("name") if isinstance(seg, dict) else None
        if parts is None:  # version 1: the segment is the whole part file
            data = _part(bundle, name, rel)
        elif not isinstance(name, str) or not PART_NAME.match(name):
            raise StateError(f"refused: {rel}: bad part name {name!r}")
        elif name not in parts:
            raise StateError(f"refused: {rel} names part {name!r}, which is not in the bundle's part table")
        else:
            offset, size = seg.get("offset"), seg.get("size")
            if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or size < 0:
                raise StateError(f"refused: {rel}: a damaged segment of part {name}")
            data = parts[name][offset:offset + size]
        if len(data) != seg.get("size"):
            raise StateError(f"refused: part {name} of {rel} is truncated or padded "
                             f"({len(data)} bytes, the manifest says {seg.get('size')})")
        if _sha256(data) != seg.get("sha256"):
            raise StateError(f"refused: part {name} of {rel} does not match its sha256 (damaged or altered)")
        chunks.append(data)
    data = b"".join(chunks)
    if len(data) != entry.get("size") or _sha256(data) != entry.get("sha256"):
        raise StateError(f"refused: {rel} does not match its size/sha256 in the manifest (damaged or altered)")
    return rel, kind, data


def _load_checked(rel: str, kind: str, path: Path) -> Any:
    """A checkpoint or model, loaded weights-only: a pickle payload is refused, never run."""
    what = kind.replace("-", " ")
    try:
        state = load_tensors(path, f"{what} {rel}")
    except ModelError as exc:
        raise StateError(f"refused: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise StateError(f"refused: {rel} is not a hinas {what}")
    return state


def _check_study(rel: str, path: Path) -> None:
    """An Optuna study file: an SQLite database that passes SQLite's own check. Optuna's RDB
    storage holds JSON and numbers, never pickles, so opening it runs no code of the bundle's."""
    import sqlite3

    if path.read_bytes()[:16] != b"SQLite format 3\0":
        raise StateError(f"refused: {rel} is not an SQLite database")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok" and \
                db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'studies'").fetchone()[0] == 1
    except sqlite3.DatabaseError as exc:
        raise StateError(f"refused: {rel} is a damaged database ({exc})") from None
    if not ok:
        raise StateError(f"refused: {rel} is a damaged database or not an Optuna study")


def import_state(exp: ExperimentConfig, bundle: Path, overwrite: bool = False) -> Dict[str, Any]:
    """Unpack ``bundle`` into ``exp``'s run folder (which must not exist unless ``overwrite``).

    The folder is built in a hidden sibling and renamed into place once every file checked out."""
    from hinas.datasets.fsutil import atomic_dir

    bundle = Path(bundle)
    manifest = read_manifest(bundle, exp)
    target = exp.experiment_dir
    if target.is_symlink():
        raise StateError(f"{target} is a symbolic link; import into a real folder")
    if target.exists() and not overwrite:
        raise StateError(f"a run folder already exists at {target}; import into a fresh place, or pass "
                         "--overwrite to replace it")
    seen = set()
    parts = _read_parts(bundle, manifest)
    with atomic_dir(target, overwrite=overwrite) as staging:
        for entry in manifest["files"]:
            rel, kind, data = _assemble(bundle, entry, parts)
            if rel in seen:
                raise StateError(f"refused: the manifest names {rel} twice")
            seen.add(rel)
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if kind == "optuna-study":
                _check_study(rel, path)
            if kind in ("search-checkpoint", "retrain-checkpoint", "model"):
                state = _load_checked(rel, kind, path)
                if kind in ("search-checkpoint", "retrain-checkpoint") and manifest.get("compact"):
                    torch.save(expand_state(state), path)
    return manifest


def describe(manifest: Dict[str, Any]) -> str:
    """Counts and sizes per kind of file, one line each."""
    kinds: Dict[str, List[int]] = {}
    for f in manifest["files"]:
        kinds.setdefault(f["kind"], []).append(f["size"])
    return "\n".join(f"  {k:18s} {len(v):3d} file(s) {sum(v) / 2**20:9.2f} MiB" for k, v in sorted(kinds.items()))

