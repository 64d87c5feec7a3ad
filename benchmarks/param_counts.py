"""Parameters of derived networks vs. retraining width, to calibrate against the paper's 0.63 M.

Draws genotypes from the paper preset's supernet with random alpha/beta (seeded), and the
hand-written example, and prints each one's parameter count at several retraining widths
(channels per node at level 0; the other levels keep the 1:2:4 ratios).

    python benchmarks/param_counts.py --samples 20 --widths 10 16 20 24 28
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from hinas_core import Genotype, Supernet, build_network, count_parameters, preset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--widths", type=int, nargs="+", default=[10, 16, 20, 24, 28])
    args = ap.parse_args(argv)
    genotypes = [("example_denoise", Genotype.load("example_denoise"))]
    for seed in range(args.samples):
        torch.manual_seed(seed)
        net = Supernet(preset(args.preset))
        with torch.no_grad():
            for p in net.arch_parameters():
                p.normal_(0, 1)
        genotypes.append((f"random-{seed}", net.genotype()))
    table = np.array([[count_parameters(build_network(g, width=w)) for w in args.widths] for _, g in genotypes])
    print("genotype          levels    " + "".join(f"  W={w:<8d}" for w in args.widths))
    for (name, g), row in zip(genotypes, table):
        print(f"{name:17s} {'-'.join(map(str, g.levels)):9s} " + "".join(f"  {n / 1e6:8.3f} M" for n in row))
    rand = table[1:]
    print(f"{'random: median':27s}" + "".join(f"  {n / 1e6:8.3f} M" for n in np.median(rand, axis=0)))
    print(f"{'random: min':27s}" + "".join(f"  {n / 1e6:8.3f} M" for n in rand.min(axis=0)))
    print(f"{'random: max':27s}" + "".join(f"  {n / 1e6:8.3f} M" for n in rand.max(axis=0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
