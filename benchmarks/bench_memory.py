"""Memory of one supernet training step with cell sharing (Eq. 5) vs. without (Eq. 6).

Prints, for the same space, batch and patch size, in one run: the bytes autograd saves for
backward (any device) and, on CUDA, the allocator's peak over forward + backward. The paper
claims sharing needs 1/3 of the memory; the structural bound with widths W/2W/4W is ~0.44
(edge levels have two incoming levels, not three).

    python benchmarks/bench_memory.py --preset denoise --batch 12 --size 64 [--device cuda]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch
from _common import device_name, write_json

from hinas_core import Supernet, count_parameters, preset
from hinas_core.memory import cuda_step_peak, saved_activation_bytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="denoise", help="space preset (default: denoise, the paper's 4 layers x 5 nodes)")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=64, help="patch size (default 64)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device)
    rows = {}
    for sharing in (True, False):
        cfg = dataclasses.replace(preset(args.preset), cell_sharing=sharing)
        net = Supernet(cfg).to(device)
        t0 = time.perf_counter()
        saved = saved_activation_bytes(net, x)
        row = {"params": count_parameters(net), "saved_bytes": saved, "forward_s": time.perf_counter() - t0}
        if device.type == "cuda":
            cuda_step_peak(net, x)  # warm-up: cuDNN workspaces, allocator pools
            row["cuda_peak_bytes"] = cuda_step_peak(net, x)
        rows["shared" if sharing else "unshared"] = row
        print(f"{'Eq. 5 shared' if sharing else 'Eq. 6 unshared':16s} params {row['params']:>10,d}  "
              f"saved activations {saved / 2**20:9.1f} MiB"
              + (f"  CUDA peak {row['cuda_peak_bytes'] / 2**20:9.1f} MiB" if "cuda_peak_bytes" in row else ""),
              flush=True)
    ratio = rows["shared"]["saved_bytes"] / rows["unshared"]["saved_bytes"]
    print(f"ratio shared/unshared, saved activations: {ratio:.3f}")
    result = {"preset": args.preset, "batch": args.batch, "size": args.size, "device": str(device),
              "device_name": device_name(device),
              "torch": torch.__version__, "rows": rows, "saved_ratio": ratio}
    if device.type == "cuda":
        result["cuda_peak_ratio"] = rows["shared"]["cuda_peak_bytes"] / rows["unshared"]["cuda_peak_bytes"]
        print(f"ratio shared/unshared, CUDA peak: {result['cuda_peak_ratio']:.3f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
