"""Where the retrained genotype comes from when it is not searched: the ``derive`` section.

Table 3 edits *the* cell the searched-width run found (R1: conv -> def, R2: rewired), and Table 6
retrains the networks found on BSD500 on SIM1800. Both are runs whose search is replaced by "take
this genotype file (and apply edit X)", so the comparison isolates the edit or the dataset:

```yaml
derive:
  from_genotype: "{output_dir}/bsd500-table1_ws/derived/sigma{sigma}/genotype.json"
  edit: r1
```

``{output_dir}`` is the run's own ``output_dir`` and ``{sigma}`` each noise level of ``data.sigmas``
(``30``, ``50``; ``0`` for stored pairs), so a run takes what another run of the same output folder
derived. The edit itself is applied when the retraining jobs are made (:func:`pipeline.run.retrain_jobs`),
after the width is calibrated on the found network: an edited cell keeps the found network's widths.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from hinas_core.config import ConfigError
from hinas_core.genotype import EDITS, Genotype, GenotypeError, check_ops, known_genotypes

if TYPE_CHECKING:
    from .experiment import ExperimentConfig

PLACEHOLDERS = ("output_dir", "sigma")


@dataclass(frozen=True)
class DeriveConfig:
    """Attributes:
        from_genotype: None (derive from this run's search), or a genotype.json path (may hold
            ``{output_dir}`` and ``{sigma}``) or a known genotype's name, which replaces the search.
        edit: Table 3's cell edit applied to the genotype before retraining: ``r1`` (every conv
            becomes a deformable conv), ``r2`` (the same ops, rewired) or None.
    """

    from_genotype: Optional[str] = None
    edit: Optional[str] = None

    def __post_init__(self):
        if self.edit is not None and (not isinstance(self.edit, str) or self.edit not in EDITS):
            raise ConfigError(f"derive.edit: {self.edit!r} is not one of {[None, *sorted(EDITS)]}")
        src = self.from_genotype
        if src is None:
            return
        if not isinstance(src, str) or not src.strip() or "\0" in src:
            raise ConfigError(f"derive.from_genotype: expected a genotype.json path or a known genotype's name, got {src!r}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(src) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"derive.from_genotype: {exc} in {src!r} (placeholders: {{output_dir}}, {{sigma}})") from None
        unknown = [f for f in fields if f not in PLACEHOLDERS]
        if unknown:
            raise ConfigError(f"derive.from_genotype: unknown placeholder {{{unknown[0]}}}; known are {{output_dir}} and {{sigma}}")

    def resolved(self, output_dir: str, base: Path) -> "DeriveConfig":
        """``{output_dir}`` filled in and a relative path made absolute (trials run elsewhere);
        ``{sigma}`` stays for :func:`genotype_source`. A known genotype's name stays a name."""
        src = self.from_genotype
        if src is None or (src in known_genotypes() and not Path(src).exists()):
            return self
        src = src.replace("{output_dir}", output_dir)
        return DeriveConfig(str((base / Path(src).expanduser()).resolve()), self.edit)


def genotype_source(derive: DeriveConfig, sigma: float) -> str:
    """The genotype file (or name) ``derive.from_genotype`` gives for noise level ``sigma``."""
    return derive.from_genotype.replace("{sigma}", f"{sigma:g}")


def given_genotypes(exp: "ExperimentConfig") -> Dict[float, Genotype]:
    """Per noise level, the genotype ``derive.from_genotype`` names, checked against the space.

    Raises :class:`GenotypeError` with one line when a file is missing (the run that derives it
    has not got that far), unreadable, or made for a space with other ops."""
    out = {}
    for sigma in exp.data.sigmas:
        src = genotype_source(exp.derive, sigma)
        if not Path(src).exists() and src not in known_genotypes():
            raise GenotypeError(f"derive.from_genotype: {src} does not exist yet: run the experiment that derives it "
                                "first (its derive stage writes OUTPUT_DIR/NAME/derived/sigma<σ>/genotype.json), "
                                "or --set derive.from_genotype=FILE")
        g = Genotype.load(src)
        check_ops(g, exp.space.ops, f"of this config (preset {exp.space_preset!r})")
        out[sigma] = Genotype(g.cells, g.levels, g.widths, {**g.provenance, "derived_from": src})
    return out


def derive_given(exp: "ExperimentConfig") -> Dict[float, Path]:
    """The derive stage of a run without search: copy each given genotype into the run's
    ``derived/sigma<σ>/genotype.json`` (its provenance names the source), as a search's derive does."""
    return {sigma: g.save(exp.experiment_dir / "derived" / f"sigma{sigma:g}" / "genotype.json")
            for sigma, g in given_genotypes(exp).items()}
