"""Seconds per search epoch of the HiNAS supernet, as the search stage runs it.

Runs :class:`hinas_core.search.Searcher` - the code the pipeline's search trials run - on
BSD500 (Train-W / Train-A / Validation-V split of the 300 training images, 13 steps of
batch 12 per epoch, validation on the 6 V images) with the architecture steps on, and
prints for each mode, in one run: the median epoch time, its training part, the time of one
weight + architecture step, and the 100-epoch projection. Modes: ``eager`` and ``graph``
(forward + backward replayed as a CUDA graph, see ``hinas_core/steps.py``); ``--sharing``
compares Eq. 5 with Eq. 6. ``--concurrent N`` also starts N copies of the graph-mode search
(different sigma) as separate processes on the same GPU, as Ray does with fractional GPUs,
and prints the wall time of their epochs together.

    python benchmarks/bench_search.py --device cuda --bsds-root PATH --modes eager graph --concurrent 3
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from _common import device_name, write_json

from hinas_core import preset
from hinas_core.search import SearchConfig, Searcher
from hinas_core.steps import synchronize


def measure(args, variant: str, sharing: bool, sigma: float) -> dict:
    from hinas.pipeline.data import search_data
    from hinas.pipeline.experiment import DataConfig

    device = torch.device(args.device)
    data = search_data(DataConfig(dataset=args.dataset, root=args.bsds_root), sigma, args.batch)
    space = dataclasses.replace(preset(args.preset), cell_sharing=sharing)
    words = set(variant.split("+"))
    if words - {"eager", "graph", "bf16", "cl"} or len(words & {"eager", "graph"}) != 1:
        raise SystemExit(f"bad mode {variant!r}: eager or graph, plus any of bf16, cl")
    cfg = SearchConfig(max_epochs=100, warmup_epochs=0, batch_size=args.batch, cuda_graph="graph" in words,
                       patience=10**6, seed=0, precision="bf16" if "bf16" in words else "fp32", channels_last="cl" in words)
    searcher = Searcher(space, cfg, data.train_w, data.train_a, data.evaluate, data.steps_per_epoch, device)
    epochs, train = [], []
    for i in range(args.warmup + args.epochs):
        synchronize(device)
        t0 = time.perf_counter()
        m = searcher.run_epoch()
        synchronize(device)
        if i >= args.warmup:
            epochs.append(time.perf_counter() - t0)
            train.append(m["train_seconds"])
    epoch_s, train_s = float(np.median(epochs)), float(np.median(train))
    peak, steps = searcher.peak_memory(), searcher.steps_per_epoch
    del searcher  # free this search's GPU memory (graphs, pools) before the next one starts
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"mode": variant, "sharing": sharing, "sigma": sigma,
            "steps_per_epoch": steps, "epoch_s": epoch_s, "train_s": train_s,
            "step_s": train_s / steps, "validation_s": epoch_s - train_s,
            "projected_100_epochs_min": 100 * epoch_s / 60, "peak_memory_bytes": peak,
            "epochs_timed": len(epochs)}


def concurrent(args, n: int) -> dict:
    """``n`` graph-mode searches (sigma 30, 50, 70, ...) as separate processes at once."""
    sigmas = [30 + 20 * i for i in range(n)]
    base = [sys.executable, os.path.abspath(__file__), "--device", args.device, "--dataset", args.dataset,
            "--preset", args.preset, "--epochs", str(args.epochs), "--warmup", str(args.warmup), "--modes", "graph",
            "--concurrent", "0"] + (["--bsds-root", args.bsds_root] if args.bsds_root else [])
    t0 = time.perf_counter()
    procs = [subprocess.Popen(base + ["--sigma", str(s), "--quiet"], stdout=subprocess.PIPE, text=True) for s in sigmas]
    rows = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a concurrent search process failed (exit {p.returncode})")
        rows.append(json.loads(out.strip().splitlines()[-1])["rows"][0])
    wall = time.perf_counter() - t0
    worst = max(r["epoch_s"] for r in rows)
    return {"processes": n, "sigmas": sigmas, "epoch_s_each": [r["epoch_s"] for r in rows],
            "projected_100_epochs_min_all": 100 * worst / 60, "wall_s_including_start": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="denoise", help="space preset (default: the paper's 4 layers x 5 nodes)")
    ap.add_argument("--dataset", default="bsd500", choices=["bsd500", "sample"])
    ap.add_argument("--bsds-root", default=None, help="BSDS500 root (default: $HINAS_BSDS500_ROOT)")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--sigma", type=float, default=30)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per mode (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed epochs first (graph capture, cuDNN tuning)")
    ap.add_argument("--modes", nargs="+", default=["eager", "graph"],
                    help="eager or graph (CUDA graph), each optionally +bf16 (autocast) and +cl (channels-last); "
                         "default: eager graph")
    ap.add_argument("--sharing", choices=["on", "off", "both"], default="on")
    ap.add_argument("--concurrent", type=int, default=0, help="also time N graph-mode searches as N processes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="print only the JSON result (used by --concurrent)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for sharing in ([True, False] if args.sharing == "both" else [args.sharing == "on"]):
        for mode in args.modes:
            row = measure(args, mode, sharing, args.sigma)
            rows.append(row)
            if not args.quiet:
                print(f"sharing={'on ' if sharing else 'off'} {mode:13s} epoch {row['epoch_s']:6.2f} s "
                      f"(training {row['train_s']:.2f} s = {row['steps_per_epoch']} x {row['step_s'] * 1000:.0f} ms W+A step, "
                      f"validation {row['validation_s']:.2f} s); 100 epochs {row['projected_100_epochs_min']:.1f} min; "
                      f"peak {row['peak_memory_bytes'] / 2**30:.1f} GiB", flush=True)
    result = {"preset": args.preset, "batch": args.batch, "device": device_name(device), "torch": torch.__version__,
              "rows": rows}
    base = {r["sharing"]: r for r in rows if r["mode"] == "eager"}
    for r in rows:
        if r["mode"] != "eager" and r["sharing"] in base:
            r["speedup_vs_eager"] = base[r["sharing"]]["epoch_s"] / r["epoch_s"]
            if not args.quiet:
                print(f"{r['mode']} / eager speed-up (sharing={'on' if r['sharing'] else 'off'}): {r['speedup_vs_eager']:.2f}x")
    write_json(args.json, result)
    if args.concurrent:
        try:
            c = concurrent(args, args.concurrent)
        except SystemExit as exc:  # keep the single-search figures; say why the rest is missing
            result["concurrent"] = {"error": str(exc)}
            print(f"concurrent run failed: {exc}", flush=True)
            write_json(args.json, result)
            return 1
        result["concurrent"] = c
        print(f"{c['processes']} searches at once (sigma {c['sigmas']}): epochs of "
              + ", ".join(f"{s:.2f}" for s in c["epoch_s_each"])
              + f" s; all three 100-epoch searches in {c['projected_100_epochs_min_all']:.1f} min", flush=True)
    write_json(args.json, result)
    if args.quiet:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
