"""Parameters of the networks the ablation configs retrain, beside the paper's (Tables 1 and 3, ASPP).

Each config's own retraining spec (:func:`hinas.pipeline.run.retrain_jobs`: width calibration,
cell edit, end part) is built for one genotype in that config's width setting and counted. The
genotype is a known one (default ``paper_fig5b_ops``: the ops of the paper's Fig. 5(b) cell);
w40 and wm use its cell on their fixed width paths. Also prints the ASPP block's cost at the ws
network's width, the calibration left out.

    python benchmarks/ablation_params.py [--genotype NAME|FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.run import retrain_jobs
from hinas_core import Genotype, GenotypeError, count_parameters
from hinas_core.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"
# Table 1 gives parameter counts; Table 3 and the ASPP figure do not.
VARIANTS = [("ws", "ablation_table1_ws.yaml", 0.63), ("w40", "ablation_table1_w40.yaml", 0.96),
            ("wm", "ablation_table1_wm.yaml", 1.13), ("R1", "ablation_table3_r1.yaml", None),
            ("R2", "ablation_table3_r2.yaml", None), ("ASPP", "ablation_aspp.yaml", None)]


def spec_for(config: str, genotype: Genotype, folder: Path, overrides=()) -> dict:
    exp = load_experiment(CONFIGS / config, [f"output_dir={folder}", *overrides])
    levels = exp.space.fixed_levels or genotype.levels
    g = Genotype(genotype.cells, levels, exp.space.widths if exp.space.fixed_levels else genotype.widths)
    path = g.save(folder / f"{config}.json")
    return next(j["spec"] for j in retrain_jobs(exp, {30.0: path}) if j["spec"]["kind"] == "hinas")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genotype", default="paper_fig5b_ops", help="a known genotype's name or a genotype.json")
    args = ap.parse_args(argv)
    try:
        genotype = Genotype.load(args.genotype)
    except GenotypeError as exc:
        print(f"ablation_params: {exc}", file=sys.stderr)
        return 2
    print(f"genotype {args.genotype}: ops {sorted(genotype.ops_used())}, ws path {'-'.join(map(str, genotype.levels))}")
    print(f"{'variant':8s} {'config':28s} {'width':>5s}  {'widths per node':18s} {'params':>9s}  paper")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, config, paper in VARIANTS:
            spec = spec_for(config, genotype, folder)
            widths = build_model(spec).widths
            print(f"{name:8s} {config:28s} {spec['width'] or '-':>5}  {'/'.join(map(str, widths)):18s} "
                  f"{count_parameters(build_model(spec)) / 1e6:7.3f} M  {f'{paper:.2f} M' if paper else '-'}")
        for name, config, _ in VARIANTS[1:3]:  # what the fixed paths span, over cells of one op
            span = [count_parameters(build_model(spec_for(config, Genotype([[[(op, i), (op, i + 1)] for i in range(genotype.num_nodes)]],
                                                                           genotype.levels, genotype.widths), folder)))
                    for op in ("skip", "def")]
            print(f"{name}: {span[0] / 1e6:.3f} M with skip only, {span[1] / 1e6:.3f} M with def only")
        ws = spec_for("ablation_table1_ws.yaml", genotype, folder)
        plain, aspp = build_model(ws), build_model({**ws, "aspp": True})
        print(f"ASPP at the ws width W={ws['width']} (no recalibration): {count_parameters(plain) / 1e6:.3f} M without, "
              f"{count_parameters(aspp) / 1e6:.3f} M with (the block: {count_parameters(aspp.aspp) / 1e6:.3f} M, "
              f"{aspp.aspp.branches[0][0].in_channels} -> {aspp.aspp.out_channels} channels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
