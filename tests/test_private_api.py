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
