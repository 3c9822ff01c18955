"""Issue 31: no private Ray or Optuna-Ray API in the package. These names break silently on a
Ray upgrade (no deprecation, no error until the code path runs on a cluster)."""

from __future__ import annotations

from pathlib import Path

import dsnet_automl

ROOT = Path(dsnet_automl.__file__).parent

# ray.experimental.internal_kv (the GCS key-value store) and OptunaSearch's bookkeeping
BANNED = ("ray.experimental", "_internal_kv", "._ot_trials", "._completed_trials")


def _hits(path: Path, text: str) -> list[str]:
    return [
        f"{path}:{n}: {word!r} in {line.strip()!r}"
        for n, line in enumerate(text.splitlines(), 1)
        for word in BANNED
        if word in line
    ]


def test_no_private_ray_api():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 50  # really walked the package
    hits = [h for p in files for h in _hits(p.relative_to(ROOT.parent), p.read_text())]
    assert hits == [], "private Ray/Optuna-Ray API (use a public one):\n" + "\n".join(hits)


def test_detector_finds_each_name():
    text = "\n".join(
        [
            "from ray.experimental import internal_kv",
            "internal_kv._internal_kv_get(key)",
            "self._ot_trials.get(trial_id)",
            "ok = 1",
            "trial_id in self._completed_trials",
        ]
    )
    assert [h.split(":")[1] for h in _hits(Path("m.py"), text)] == ["1", "2", "3", "5"]


# Issue 34: no private timm / NNI / torch / optuna API outside the one wrapper module that says
# why no public one does the job (dsnet_automl/_private_api.py).
THIRD_PARTY = (
    *("torch", "torchvision", "timm", "nni", "optuna", "ray", "numpy", "np", "sqlalchemy"),
    *("onnx", "onnxruntime", "PIL", "pandas", "pd", "yaml", "typer", "rich"),
)
# private attributes of objects the package does not own (torch modules, tuners)
BANNED_ATTRS = ("_modules", "_parameters", "_buffers", "_random_generate_individual")
ALLOWED = {"_private_api.py"}


def _private_uses(path: Path, text: str) -> list[str]:
    """Private third-party names used in one file: an import of a private module or name of a
    third-party package, a private attribute reached from a third-party module (``torch._x``),
    or one of ``BANNED_ATTRS`` on any object."""
    import ast

    hits = []

    def private(parts: list[str]) -> bool:
        return any(p.startswith("_") and not p.startswith("__") for p in parts)

    for node in ast.walk(ast.parse(text)):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            root = node.module.split(".")[0]
            names = [a.name for a in node.names]
            if root in THIRD_PARTY and (private(node.module.split(".")) or private(names)):
                hits.append(f"{where}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in THIRD_PARTY and private(a.name.split(".")):
                    hits.append(f"{where}: import {a.name}")
        elif isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in THIRD_PARTY and private(chain):
                hits.append(f"{where}: {base.id}.{'.'.join(chain)}")
            elif node.attr in BANNED_ATTRS:
                hits.append(f"{where}: .{node.attr}")
    return sorted(set(hits))


def test_no_private_third_party_api_outside_the_wrapper():
    files = [p for p in sorted(ROOT.rglob("*.py")) if p.name not in ALLOWED]
    hits = [h for p in files for h in _private_uses(p.relative_to(ROOT.parent), p.read_text())]
    assert hits == [], (
        "private third-party API (use a public one or _private_api.py):\n" + "\n".join(hits)
    )
    # the wrapper really holds the exceptions (and says why in its docstring)
    wrapper = ROOT / "_private_api.py"
    assert _private_uses(Path("w.py"), wrapper.read_text())
    assert "no public" in wrapper.read_text()


def test_private_use_detector():
    text = "\n".join(
        [
            "from timm.models._efficientnet_blocks import InvertedResidual",
            "import torch",
            "torch._foreach_lerp_(a, b, 0.1)",
            "m = parent._modules[name]",
            "self._cache = 1",
            "from timm.models import create_model",
            "tuner._random_generate_individual()",
        ]
    )
    assert [h.split(":")[1] for h in _private_uses(Path("m.py"), text)] == ["1", "3", "4", "7"]
