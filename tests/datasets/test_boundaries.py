"""datasets/ stays plain: no Ray/MLflow/Optuna, and only relative imports of its own modules."""
from __future__ import annotations

import ast
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
FORBIDDEN = {"ray", "mlflow", "optuna", "datasets"}  # `datasets` would be Hugging Face's


def test_no_forbidden_or_absolute_self_imports():
    offenders = []
    for path in sorted(DATASETS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_package_exports_resolve():
    import hinas.datasets as d

    assert all(hasattr(d, name) for name in d.__all__)
    assert (DATASETS / "bsds500_manifest.json").is_file()
