#!/usr/bin/env bash
# Set up (idempotently) and run the main job on CPU, offline: a tiny HiNAS search on the
# embedded sample images - three sigma trials at once on a local Ray, each stopped by the
# paper's early-stopping rule - then the networks derived from the genotypes it found.
# Results go to runs/tiny-search/ (genotypes/, search_summary.md, Ray Tune's trial folders).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
hinas search tune_configs/tiny_search.yaml --overwrite
for g in runs/tiny-search/genotypes/*/genotype.json; do
  hinas space --preset tiny --genotype "$g" | sed -n '/^genotype/,$p'
done
