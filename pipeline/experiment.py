"""The experiment configuration: YAML -> typed, frozen dataclasses, validated before any trial.

Top-level sections: ``name``, ``space``, ``search``, ``data``, ``derive``, ``resources``, ``output``.
An unknown, mistyped or repeated key, a wrong type or an out-of-range value is a
:class:`ConfigError` that names the key. YAML is read with a ``yaml.SafeLoader`` (plain data
only, never Python objects) that also refuses a key given twice in one mapping.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import yaml

from hinas_core.config import ConfigError, SpaceConfig, check_keys, preset
from hinas_core.retrain import RetrainConfig
from hinas_core.search import SearchConfig

from .derive_stage import DeriveConfig
from .overrides import OverrideError, apply_overrides

DATASETS = ("bsd500", "sample", "sim", "rain800")
PAIR_DATASETS = ("sim", "rain800")  # stored (degraded, clean) pairs: no sigma
VAL_PROTOCOLS = ("patch", "whole")
CHANNELS = (1, 3)
AUGMENTS = ("d8", "hflip", "none")  # see hinas.datasets.patches.AUGMENTS
METRICS = ("image", "y")  # see hinas.datasets.evaluation.METRICS


class _SafeUniqueLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (YAML keeps the last one
    silently: a second ``search:`` section would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class names it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _check_names(where: str, data: Mapping[Any, Any]) -> None:
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: keys must be names, got {bad[0]!r}")


def _positive_number(section: str, key: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{section}.{key}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{section}.{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _int(section: str, key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{section}.{key}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{section}.{key}: must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class DataConfig:
    """Which images, which noise, and how validation is scored.

    Attributes:
        dataset: ``bsd500`` (root from ``root`` or ``$HINAS_BSDS500_ROOT``), ``sample``
            (scikit-image's bundled photographs, offline), or stored pairs: ``sim`` (a SIM-style
            set built by ``hinas data make-sim``) and ``rain800`` (Rain800 in either layout, or
            the stand-in built by ``hinas data make-rain-standin``), both read from ``root``.
            For stored pairs ``sigmas`` is ignored: one trial per seed, labelled sigma 0.
        root: the dataset root (made absolute before any trial starts).
        sigmas: Gaussian noise levels on the 0-255 scale; one search trial per sigma and seed.
        patch_size: training crop size (paper: 64).
        val_fraction: share of training images held out as Validation-V (paper: 2%).
        val_protocol: ``patch`` (paper: adjacent 64x64 patches) or ``whole``.
        eval_patch: tile size of the patch protocol.
        noise_seed: seeds the fixed validation/test noise of every image.
        split_seed: seeds the Train-W / Train-A / Validation-V split.
        clip: clip noisy inputs to [0, 255] (default: not clipped).
        max_images: use only the first N training images (0 = all); for tiny runs.
        val_crop: score validation on the central ``val_crop`` x ``val_crop`` region of each
            image (0 = whole images, the paper's); for tiny CPU runs.
        channels: 1 (images read as BT.601 grey, the default) or 3 (RGB end to end: data,
            networks with ``in_channels`` = 3, evaluation). Sets ``space.in_channels``.
        augment: training-patch augmentation: ``d8`` (the 8 rotations/flips, paper Sec. 3.1,
            denoising), ``hflip`` (horizontal flip only: rotating rain changes its direction,
            paper Sec. 3.4) or ``none``.
        metric: what PSNR/SSIM are computed on: ``image`` (the image as it is, grey or every RGB
            channel) or ``y`` (the Y channel of YCbCr of an RGB image, as de-raining papers
            score; needs ``channels: 3``).
    """

    dataset: str = "bsd500"
    root: Optional[str] = None
    sigmas: Tuple[float, ...] = (30.0, 50.0, 70.0)
    patch_size: int = 64
    val_fraction: float = 0.02
    val_protocol: str = "patch"
    eval_patch: int = 64
    noise_seed: int = 0
    split_seed: int = 0
    clip: bool = False
    max_images: int = 0
    val_crop: int = 0
    channels: int = 1
    augment: str = "d8"
    metric: str = "image"

    def __post_init__(self):
        s = "data"
        if self.dataset not in DATASETS:
            raise ConfigError(f"{s}.dataset: {self.dataset!r} is not one of {list(DATASETS)}")
        if self.root is not None and (not isinstance(self.root, (str, os.PathLike)) or "\0" in str(self.root)):
            raise ConfigError(f"{s}.root: expected a path, got {self.root!r}")
        sig = self.sigmas
        if isinstance(sig, (int, float)) and not isinstance(sig, bool):
            sig = (sig,)
        if not isinstance(sig, (list, tuple)) or not sig:
            raise ConfigError(f"{s}.sigmas: expected a non-empty list of noise levels, got {self.sigmas!r}")
        object.__setattr__(self, "sigmas", tuple(_positive_number(s, "sigmas", v, allow_zero=self.dataset in PAIR_DATASETS)
                                                 for v in sig))
        _int(s, "patch_size", self.patch_size, 11)
        _int(s, "eval_patch", self.eval_patch, 11)
        _int(s, "noise_seed", self.noise_seed, 0)
        _int(s, "split_seed", self.split_seed, 0)
        _int(s, "max_images", self.max_images, 0)
        if _int(s, "val_crop", self.val_crop, 0) and self.val_crop < 11:
            raise ConfigError(f"{s}.val_crop: must be 0 (whole images) or >= 11, got {self.val_crop}")
        v = _positive_number(s, "val_fraction", self.val_fraction)
        if v >= 1:
            raise ConfigError(f"{s}.val_fraction: must be < 1, got {v}")
        object.__setattr__(self, "val_fraction", v)
        if self.val_protocol not in VAL_PROTOCOLS:
            raise ConfigError(f"{s}.val_protocol: {self.val_protocol!r} is not one of {list(VAL_PROTOCOLS)}")
        if not isinstance(self.clip, bool):
            raise ConfigError(f"{s}.clip: expected true or false, got {self.clip!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels not in CHANNELS:
            raise ConfigError(f"{s}.channels: expected 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"{s}.augment: {self.augment!r} is not one of {list(AUGMENTS)}")
        if self.metric not in METRICS:
            raise ConfigError(f"{s}.metric: {self.metric!r} is not one of {list(METRICS)}")
        if self.channels == 3 and self.dataset == "sample":
            raise ConfigError(f"{s}.channels: the sample set is grey only; use 1, or a dataset read in colour "
                              "(bsd500, sim, rain800)")
        if self.metric == "y" and self.channels != 3:
            raise ConfigError(f"{s}.metric: 'y' (the Y channel of YCbCr) needs data.channels: 3, got {self.channels}")


@dataclass(frozen=True)
class ResourceConfig:
    """Per-trial resources for Ray Tune; fractions share a device (e.g. gpu: 0.33 = 3 per GPU)."""

    cpu: float = 1.0
    gpu: float = 0.0
    max_concurrent: int = 0  # 0 = as many as resources allow

    def __post_init__(self):
        _positive_number("resources", "cpu", self.cpu)
        g = _positive_number("resources", "gpu", self.gpu, allow_zero=True)
        if g > 1 and g != int(g):
            raise ConfigError(f"resources.gpu: a fraction above 1 is not allowed, got {g}")
        _int("resources", "max_concurrent", self.max_concurrent, 0)


BASELINES = ("dncnn",)
PROTOCOLS = ("patch", "whole")


@dataclass(frozen=True)
class ModelConfig:
    """How a genotype becomes the network that is retrained, and which baselines train beside it.

    Attributes:
        width: channels per node at level 0 of the derived network (None: see target_params).
        target_params: pick the width whose network is closest to this many parameters
            (paper: 0.63 M); used when ``width`` is None. 0 keeps the search widths.
        baselines: baselines retrained by the same stage on the same budget (``dncnn``).
        dncnn_depth, dncnn_width: the DnCNN baseline's size (17 x 64 = 0.56 M parameters).
        aspp: an ASPP block in the derived network's end part (paper Fig. 2 / 5(a); the text says
            conv, the default). Counted by the width calibration.
    """

    width: Optional[int] = None
    target_params: int = 630_000
    baselines: Tuple[str, ...] = ("dncnn",)
    dncnn_depth: int = 17
    dncnn_width: int = 64
    aspp: bool = False

    def __post_init__(self):
        if self.width is not None:
            _int("model", "width", self.width, 1)
        _int("model", "target_params", self.target_params, 0)
        b = self.baselines
        if isinstance(b, str) or not isinstance(b, (list, tuple)):
            raise ConfigError(f"model.baselines: expected a list, got {b!r}")
        unknown = [x for x in b if x not in BASELINES]
        if unknown:
            raise ConfigError(f"model.baselines: unknown baseline(s) {unknown}; known: {list(BASELINES)}")
        object.__setattr__(self, "baselines", tuple(b))
        _int("model", "dncnn_depth", self.dncnn_depth, 3)
        _int("model", "dncnn_width", self.dncnn_width, 1)
        if not isinstance(self.aspp, bool):
            raise ConfigError(f"model.aspp: expected true or false, got {self.aspp!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Attributes:
        protocols: ``patch`` (paper: adjacent 64x64 patches) and/or ``whole`` images.
        max_images: score only the first N test images (0 = all 200).
        crop: score the central ``crop`` x ``crop`` region of each test image (0 = whole).
        examples: noisy/denoised/clean example images kept per model.
        bm3d: also score BM3D (PyPI ``bm3d``, told the true sigma) on the same noisy images:
            ``true`` reuses the scores kept by ``hinas data bm3d`` when they were kept for these
            very test pairs and computes them otherwise; ``kept`` only reuses them (BM3D is left
            out where none match: for GPU jobs); ``false``: no BM3D.
    """

    protocols: Tuple[str, ...] = ("patch", "whole")
    max_images: int = 0
    crop: int = 0
    examples: int = 2
    bm3d: Union[bool, str] = True

    def __post_init__(self):
        p = self.protocols
        if isinstance(p, str):
            p = (p,)
        if not isinstance(p, (list, tuple)) or not p or any(x not in PROTOCOLS for x in p):
            raise ConfigError(f"evaluate.protocols: expected a non-empty list of {list(PROTOCOLS)}, got {self.protocols!r}")
        object.__setattr__(self, "protocols", tuple(p))
        _int("evaluate", "max_images", self.max_images, 0)
        if _int("evaluate", "crop", self.crop, 0) and self.crop < 11:
            raise ConfigError(f"evaluate.crop: must be 0 (whole images) or >= 11, got {self.crop}")
        _int("evaluate", "examples", self.examples, 0)
        if not isinstance(self.bm3d, bool) and self.bm3d != "kept":
            raise ConfigError(f"evaluate.bm3d: expected true, false or kept, got {self.bm3d!r}")


OPTUNA_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class OptunaConfig:
    """Optuna (through Ray Tune's OptunaSearch) over the search hyperparameters, per sigma.

    Attributes:
        space: ``{"search.<key>": {"type": "float"|"int"|"categorical", "low", "high", "log",
            "choices"}}``, e.g. ``search.ssim_weight`` (lambda), ``search.a_lr``,
            ``search.w_lr``, ``search.warmup_epochs``, ``search.patience`` (the early-stop N).
        num_samples: trials per sigma. max_concurrent: at most this many at once (0 = no limit).
        seed: the sampler's seed. storage: an Optuna storage URL (e.g. ``sqlite:///study.db``) for a
            persistent study shared across jobs; study_name defaults to ``<name>-sigma<s>``.
    """

    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    num_samples: int = 4
    max_concurrent: int = 0
    seed: int = 0
    storage: Optional[str] = None
    study_name: Optional[str] = None

    def __post_init__(self):
        from hinas_core.search import SearchConfig as _S

        if not isinstance(self.space, Mapping) or not self.space:
            raise ConfigError("optuna.space: expected a non-empty mapping of search.<key> to a distribution")
        known = {f.name: f.type for f in fields(_S)}
        for key, dim in self.space.items():
            where = f"optuna.space.{key}"
            section, _, name = str(key).partition(".")
            if section != "search" or name not in known or name == "seed":
                raise ConfigError(f"{where}: only search.<key> can be explored; known keys are {sorted(k for k in known if k != 'seed')}")
            if not isinstance(dim, Mapping) or dim.get("type") not in OPTUNA_TYPES:
                raise ConfigError(f"{where}: expected {{type: float|int|categorical, ...}}, got {dim!r}")
            extra = sorted(set(dim) - {"type", "low", "high", "log", "choices"})
            if extra:
                raise ConfigError(f"{where}: unknown key(s) {extra}")
            if dim["type"] == "categorical":
                if not isinstance(dim.get("choices"), (list, tuple)) or not dim["choices"]:
                    raise ConfigError(f"{where}.choices: expected a non-empty list")
            else:
                lo, hi = dim.get("low"), dim.get("high")
                num = (int,) if dim["type"] == "int" else (int, float)
                if any(isinstance(v, bool) or not isinstance(v, num) for v in (lo, hi)) or not lo < hi:
                    raise ConfigError(f"{where}: needs numeric low < high ({dim['type']}), got low={lo!r} high={hi!r}")
                if dim.get("log") and lo <= 0:
                    raise ConfigError(f"{where}: a log scale needs low > 0")
        _int("optuna", "num_samples", self.num_samples, 1)
        _int("optuna", "max_concurrent", self.max_concurrent, 0)
        _int("optuna", "seed", self.seed, 0)
        for k in ("storage", "study_name"):
            if getattr(self, k) is not None and not isinstance(getattr(self, k), str):
                raise ConfigError(f"optuna.{k}: expected a string, got {getattr(self, k)!r}")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    space: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    optuna: Optional[OptunaConfig] = None
    ablation: str = ""
    mlflow_experiment: str = ""  # MLflow experiment the runs go to (default: name)
    seeds: Tuple[int, ...] = (0,)
    output_dir: str = "runs"
    space_preset: str = "denoise"

    def to_dict(self) -> Dict[str, Any]:
        space = self.space.to_dict()
        return {"name": self.name, "space": {"preset": self.space_preset, **space},
                "search": self.search.to_dict(), "data": _data_dict(self.data),
                "derive": asdict(self.derive),
                "resources": asdict(self.resources), "retrain": self.retrain.to_dict(),
                "model": {**asdict(self.model), "baselines": list(self.model.baselines)},
                "evaluate": {**asdict(self.evaluate), "protocols": list(self.evaluate.protocols)},
                "optuna": None if self.optuna is None else {**asdict(self.optuna), "space": dict(self.optuna.space)},
                "ablation": self.ablation, "mlflow_experiment": self.mlflow_experiment, "seeds": list(self.seeds), "output_dir": self.output_dir}

    @property
    def experiment_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# Data keys added after runs were exported: left out of the dict at their defaults, so that the
# config hash of a state bundle or a trained model (pipeline/state.py, retrain_stage.py) made
# before they existed still matches.
_LATER_DATA_KEYS = {"channels": 1, "augment": "d8", "metric": "image"}


def _data_dict(data: DataConfig) -> Dict[str, Any]:
    d = {**asdict(data), "sigmas": list(data.sigmas)}
    return {k: v for k, v in d.items() if k not in _LATER_DATA_KEYS or v != _LATER_DATA_KEYS[k]}


TOP_LEVEL = ("name", "space", "search", "data", "derive", "resources", "retrain", "model", "evaluate", "optuna", "ablation", "mlflow_experiment", "seeds",
             "output_dir")


def experiment_from_dict(raw: Any, base_dir: Optional[Path] = None) -> ExperimentConfig:
    """Validate a raw config mapping; resolve paths to absolute (trials run elsewhere)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {type(raw).__name__}")
    _check_names("the config", raw)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; known keys are {list(TOP_LEVEL)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or "\0" in name or name.startswith("."):
        raise ConfigError(f"name: expected a non-empty experiment name without '/', got {name!r}")
    sections = {}
    for key in ("space", "search", "data", "derive", "resources", "retrain", "model", "evaluate"):
        value = raw.get(key)
        value = {} if value is None else value  # an empty section
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of keys, got {type(value).__name__}")
        _check_names(key, value)
        sections[key] = dict(value)
    space_raw = sections["space"]
    preset_name = space_raw.pop("preset", "denoise")
    if not isinstance(preset_name, str):
        raise ConfigError(f"space.preset: expected a preset name, got {preset_name!r}")
    space = SpaceConfig.from_dict({**preset(preset_name).to_dict(), **space_raw})
    search = SearchConfig.from_dict(sections["search"])
    if search.warmup_epochs >= search.max_epochs:
        raise ConfigError(f"search.warmup_epochs: {search.warmup_epochs} warm-up epochs leave no architecture epoch "
                          f"before search.max_epochs = {search.max_epochs}; the search could derive no genotype")
    check_keys("data", sections["data"], DataConfig)
    data = DataConfig(**sections["data"])
    # One source of truth for the image channels: the data decides, the networks follow.
    if "in_channels" in space_raw and space.in_channels != data.channels:
        raise ConfigError(f"space.in_channels: set by data.channels ({data.channels} here), got {space.in_channels}")
    space = replace(space, in_channels=data.channels)
    base = base_dir or Path.cwd()
    if data.dataset in PAIR_DATASETS:
        data = replace(data, sigmas=(0.0,))  # the pairs carry their own degradation
    if data.root is not None:
        data = replace(data, root=str((base / Path(data.root).expanduser()).resolve()))
    check_keys("derive", sections["derive"], DeriveConfig)
    derive = DeriveConfig(**sections["derive"])
    check_keys("resources", sections["resources"], ResourceConfig)
    resources = ResourceConfig(**sections["resources"])
    retrain = RetrainConfig.from_dict(sections["retrain"])
    check_keys("model", sections["model"], ModelConfig)
    model = ModelConfig(**sections["model"])
    check_keys("evaluate", sections["evaluate"], EvalConfig)
    evaluate = EvalConfig(**sections["evaluate"])
    if evaluate.bm3d and data.channels == 3 and data.dataset not in PAIR_DATASETS:
        raise ConfigError("evaluate.bm3d: the BM3D baseline denoises grey images; set it to false with data.channels: 3")
    optuna = None
    if raw.get("optuna") is not None:
        if not isinstance(raw["optuna"], Mapping):
            raise ConfigError(f"optuna: expected a mapping of keys, got {type(raw['optuna']).__name__}")
        _check_names("optuna", raw["optuna"])
        check_keys("optuna", raw["optuna"], OptunaConfig)
        optuna = OptunaConfig(**raw["optuna"])
        storage = optuna.storage
        if storage and storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            # A relative SQLite path is relative to where the command runs, not to a trial's folder.
            optuna = replace(optuna, storage="sqlite:///" + str((base / storage[len("sqlite:///"):]).resolve()))
    if optuna is not None and derive.from_genotype:
        raise ConfigError("optuna: explores the search, but derive.from_genotype replaces the search; drop one of them")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, Sequence) or isinstance(seeds, str) or not seeds:
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    seeds = tuple(_int("seeds", str(i), s, 0) for i, s in enumerate(seeds))
    out = raw.get("output_dir", "runs")
    if not isinstance(out, (str, os.PathLike)) or "\0" in str(out):
        raise ConfigError(f"output_dir: expected a path, got {out!r}")
    output_dir = str((base / Path(out).expanduser()).resolve())
    derive = derive.resolved(output_dir, base)
    ablation = raw.get("ablation") or ""
    if not isinstance(ablation, str):
        raise ConfigError(f"ablation: expected a name, got {ablation!r}")
    mlflow_experiment = raw.get("mlflow_experiment") or ""
    if not isinstance(mlflow_experiment, str):
        raise ConfigError(f"mlflow_experiment: expected a name, got {mlflow_experiment!r}")
    return ExperimentConfig(name=name, space=space, search=search, data=data, derive=derive, resources=resources,
                            retrain=retrain, model=model, evaluate=evaluate, optuna=optuna, ablation=ablation,
                            mlflow_experiment=mlflow_experiment, seeds=seeds,
                            output_dir=output_dir, space_preset=preset_name)


def _merge(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def read_config(path, _seen: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """One YAML config as a dict; ``extends: other.yaml`` (relative to this file) is merged under it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not text, ...
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_SafeUniqueLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        loc = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: malformed YAML{loc}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    except (ValueError, IndexError, TypeError, OverflowError) as exc:
        # PyYAML's scalar constructors raise these on some malformed tagged values, e.g. `!!int ` alone.
        raise ConfigError(f"{path}: malformed YAML: {type(exc).__name__}: {exc}") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    if isinstance(raw, dict) and "extends" in raw:
        parent = raw.pop("extends")
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends: expected a file name, got {parent!r}")
        parent_path = (path.parent / parent).resolve()
        if parent_path in _seen:
            raise ConfigError(f"{path}: extends: {parent} is part of a cycle")
        raw = _merge(read_config(parent_path, _seen + (parent_path,)), raw)
    return raw


def load_experiment(path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config (safely, ``extends`` resolved), apply ``--set`` overrides, validate."""
    path = Path(path)
    raw = read_config(path, (path.resolve(),))
    try:
        raw = apply_overrides(raw, overrides) if isinstance(raw, dict) else raw
    except OverrideError as exc:
        raise ConfigError(str(exc)) from None
    # Relative paths in a config are relative to the working directory the command runs in.
    return experiment_from_dict(raw)
