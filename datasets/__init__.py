"""The data side of hinas: datasets, splits, patch sampling and the evaluation protocol.

Installed as ``hinas.datasets`` (never a top-level ``datasets``). No Ray/MLflow/Optuna here.

Conventions: clean images are uint8 numpy arrays ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB) in
[0, 255]; training batches are float32 tensors ``(B, C, P, P)`` holding ``value / 255``;
Gaussian noise sigma is on the 0-255 scale and noisy inputs are unclipped unless asked.
Every data problem raises :class:`DatasetError` (a ``ValueError``) naming the file or setting.

BSD500, Gaussian noise (HiNAS Sec. 3.1)
    ``load_bsd500(split, root=None, gray=True)`` -> :class:`ImageSet` (train = 300, test = 200)
    ``search_split(images, seed)`` -> :class:`SearchSplit` (Train-W / Train-A / Validation-V)
    ``PatchSampler(images, sigma).sample(rng, batch_size)`` -> (noisy, clean) batch
    ``noisy_pairs(images, sigma, seed)`` -> :class:`PairSet` with fixed, per-image seeded noise
    ``verify_bsd500(root)``, ``fetch_bsd500(root)``: manifest check and download
Other sets
    ``sample_set(split)``: scikit-image's bundled photos, offline (quickstart, smoke tests)
    ``build_sim_dataset`` / ``load_sim``: SIM-style camera noise (``simulate_camera_noise``)
    ``load_rain800``: Rain800 in either layout; ``build_rain_standin``: "synthetic-rain-bsds
    (NOT Rain800)"; ``PairPatchSampler``: training patches of stored pairs
Evaluation
    ``evaluate(fn, pairs, protocol="patch"|"whole")`` -> :class:`EvalResult` (PSNR/SSIM per image)
CLI hooks
    ``commands.register(subparsers)`` adds ``hinas data ...``
"""
from hinas_core.lazy import lazy_exports

# The names below load on first use (PEP 562), so that light users of the package - the CLI's
# `hinas --help`, `hinas data verify` - do not pay for torch.
_MODULES = {
    ".bsd500": ("BSD500_SPLITS", "load_bsd500"),
    ".errors": ("CacheError", "DatasetError"),
    ".evaluation": ("EvalResult", "denoise_patchwise", "denoise_whole", "evaluate", "save_results", "to_chw"),
    ".fetch": ("fetch_bsd500",),
    ".images": ("ImageSet", "Pair", "PairSet", "read_image", "to_gray"),
    ".manifest": ("verify_bsd500",),
    ".noise": ("add_gaussian_noise", "check_sigma", "image_seed", "noisy_pairs"),
    ".patches": ("PairPatchSampler", "PatchDataset", "PatchSampler", "random_crops"),
    ".rain800": ("RAIN_STANDIN_NAME", "load_rain800"),
    ".rain_standin": ("build_rain_standin",),
    ".skimage_samples": ("sample_set",),
    ".sim_dataset": ("SIM_NAME", "build_sim_dataset", "load_sim"),
    ".sim_noise": ("SimNoiseParams", "simulate_camera_noise"),
    ".splits": ("SearchSplit", "search_split"),
}

__all__ = [
    "BSD500_SPLITS", "CacheError", "DatasetError", "EvalResult", "ImageSet", "Pair", "PairPatchSampler",
    "PairSet", "PatchDataset", "PatchSampler", "RAIN_STANDIN_NAME", "SIM_NAME", "SearchSplit",
    "SimNoiseParams", "add_gaussian_noise", "build_rain_standin", "build_sim_dataset", "check_sigma",
    "denoise_patchwise", "denoise_whole", "evaluate", "fetch_bsd500", "image_seed", "load_bsd500",
    "load_rain800", "load_sim", "noisy_pairs", "random_crops", "read_image", "sample_set",
    "save_results", "search_split", "simulate_camera_noise", "to_chw", "to_gray", "verify_bsd500",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
