"""The project is a good citizen: layering holds and nothing shadows another package."""
import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", ["hinas_core", "datasets"])
def test_core_and_data_never_import_ray_mlflow_or_optuna(folder):
    offenders = []
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in {"ray", "mlflow", "optuna"}]
    assert not offenders


def test_installed_top_level_names_leave_datasets_and_pipeline_alone():
    dist = importlib.metadata.distribution("hinas")
    import hinas.datasets
    import hinas.pipeline
    assert Path(hinas.datasets.__file__).parent == ROOT / "datasets"
    assert Path(hinas.pipeline.__file__).parent == ROOT / "pipeline"
    # No bare `datasets` or `pipeline` module comes from this project.
    code = ("import importlib.util as u, json; "
            "print(json.dumps({n: (u.find_spec(n).origin if u.find_spec(n) else None) for n in ['datasets', 'pipeline']}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout
    for name, origin in __import__("json").loads(out).items():
        assert origin is None or not origin.startswith(str(ROOT / name)), f"`{name}` resolves to hinas's folder: {origin}"
    assert dist.metadata["Name"] == "hinas"


def test_hugging_face_datasets_and_hinas_datasets_import_side_by_side():
    # Run outside the checkout: there the folder `datasets/` is not on sys.path, as for a user.
    code = ("import datasets, hinas.datasets; "
            "assert hasattr(datasets, 'load_dataset'), datasets.__file__; "
            "assert hinas.datasets.__name__ == 'hinas.datasets'; print(datasets.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout


HEAVY = ("torch", "torchvision", "ray", "mlflow", "optuna", "matplotlib", "skimage")


@pytest.mark.parametrize("argv", [["--help"], ["denoise", "--help"], ["data", "--help"]])
def test_cli_help_imports_no_heavy_module(argv):
    # `hinas --help` must answer faster than `import torch`: heavy modules load only inside the
    # command that needs them (issue #13, target 3).
    code = ("import sys, json\nfrom hinas.pipeline.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage: hinas" in out.stdout
    assert __import__("json").loads(out.stdout.strip().splitlines()[-1]) == []
