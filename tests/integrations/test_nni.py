"""NNI interoperability: JSON space export, NNI samples <-> SubnetConfig, the NNI ModelSpace of
a supernet, the NNI-driven Optuna sampler, and a one-line error without the [nni] extra."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from dsnet_automl import SearchSpaceError, create_supernet, load_space
from dsnet_automl.cli import app
from dsnet_automl.errors import MissingExtraError, StudyError
from dsnet_automl.integrations.nni import (
    NNISampler,
    from_nni_sample,
    require_nni,
    scalarize,
    to_model_space,
)

TINY = ("ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny")
runner = CliRunner()


@pytest.mark.parametrize("name", TINY)
def test_exported_json_loads_in_nni_tpe_and_samples_convert(name, tmp_path):
    from nni.algorithms.hpo.tpe_tuner import TpeTuner

    out = tmp_path / "space.json"
    result = runner.invoke(app, ["spaces", "export", name, "--format", "nni", "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = json.loads(out.read_text())
    space = load_space(name)
    assert list(spec) == list(space.dim_names)
    for dim, choices in space.dims:
        assert spec[dim] == {"_type": "choice", "_value": list(choices)}
    tuner = TpeTuner("maximize", seed=0)
    tuner.update_search_space(spec)
    for i in range(5):
        params = tuner.generate_parameters(i)
        cfg = from_nni_sample(name, params)
        assert cfg in space and cfg.as_dict() == params
        tuner.receive_trial_result(i, params, float(i))


def test_from_nni_sample_is_strict():
    space = load_space("ds_resnet50_tiny")
    good = {d: c[0] for d, c in space.dims}
    as_numpy = {d: np.int64(v) for d, v in good.items()}  # what NNI tuners may hand back
    assert from_nni_sample(space, as_numpy) == space.smallest()
    with pytest.raises(SearchSpaceError, match=r"unknown dimension\(s\) \['stage9.width'\]"):
        from_nni_sample(space, {**good, "stage9.width": 4})
    with pytest.raises(SearchSpaceError, match="lacks dimension 'stage4.depth'"):
        from_nni_sample(space, {k: v for k, v in good.items() if k != "stage4.depth"})
    with pytest.raises(SearchSpaceError, match=r"stage1.width=5 is not in the grid"):
        from_nni_sample(space, {**good, "stage1.width": 5})
    with pytest.raises(SearchSpaceError, match="expected a mapping"):
        from_nni_sample(space, [1, 2])


@pytest.mark.parametrize("name", ["ds_mobilenet_v1_tiny", "ds_deit_small_tiny"])
def test_model_space_sample_freezes_to_extract(name):
    torch.manual_seed(0)
    net = create_supernet(name).eval()
    ms = to_model_space(net)
    mutables = ms.simplify()
    assert list(mutables) == list(net.space.dim_names)  # labels = our dimension names
    for dim, choices in net.space.dims:
        assert list(mutables[dim].values) == list(choices)
    x = torch.randn(2, *net.input_size)
    for seed in range(2):
        sample: dict = {}
        ms.random(memo=sample, random_state=np.random.RandomState(seed))
        cfg = from_nni_sample(net, sample)
        frozen = ms.freeze(sample)
        assert isinstance(frozen, torch.nn.Module) and not isinstance(frozen, type(ms))
        with torch.no_grad():
            torch.testing.assert_close(frozen(x), net.extract(cfg)(x))
            torch.testing.assert_close(frozen(x), net(x, cfg), rtol=1e-5, atol=1e-5)


def test_nni_strategy_runs_on_model_space():
    """An NNI multi-trial strategy searches our supernet in-process (no nnictl, no server)."""
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from nni.nas.strategy import RegularizedEvolution

    net = create_supernet("ds_resnet50_tiny").eval()
    seen = []

    def evaluate(model: torch.nn.Module) -> None:
        n = sum(p.numel() for p in model.parameters())
        seen.append(n)
        nni.report_final_result(-n)  # smaller is better

    space = RawFormatModelSpace(to_model_space(net), FunctionalEvaluator(evaluate))
    strategy = RegularizedEvolution(population_size=3, sample_size=2)
    strategy(space, SequentialExecutionEngine(max_model_count=6))
    models = list(strategy.list_models())
    assert len(models) == len(seen) == 6
    for m in models:  # every model NNI explored is one of our configs, with its real size
        cfg = from_nni_sample(net, m.sample)
        n_params = sum(p.numel() for p in net.extract(cfg).parameters())
        assert m.metric == -n_params


def test_scalarize():
    assert scalarize(0.9, 1.0) == pytest.approx(0.9)
    assert scalarize(0.9, 0.5) == pytest.approx(0.9 + 0.2 * math.log(2))
    # with a constraint: every infeasible trial ranks below every feasible one
    feasible = [scalarize(a, lat, max_latency_ms=0.7) for a, lat in [(0.0, 0.7), (0.5, 0.6)]]
    infeasible = [scalarize(a, lat, max_latency_ms=0.7) for a, lat in [(1.0, 0.71), (1.0, 2.0)]]
    assert min(feasible) >= 0 > max(infeasible)
    assert infeasible[0] > infeasible[1]


def _toy(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    k = trial.suggest_int("k", 2, 4)
    h = trial.suggest_categorical("h", [16, 32, 64])
    trial.suggest_int("fixed", 1, 1)  # single-valued: left to Optuna
    acc = 1.0 - (x - 0.3) ** 2 - 0.1 * abs(math.log10(lr) + 2) + 0.01 * k + h / 6400
    return acc, 0.5 + x


@pytest.mark.parametrize("tuner", ["tpe", "evolution"])
def test_sampler_proposals_seeding_and_resume(tuner, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    kw = {"directions": ["maximize", "minimize"], "storage": url}

    def sampler(seed: int = 0) -> NNISampler:
        return NNISampler(tuner, seed=seed, population=4, startup_trials=3)

    s = optuna.create_study(study_name="a", sampler=sampler(), **kw)
    s.optimize(_toy, n_trials=8)
    again = optuna.create_study(study_name="b", sampler=sampler(), **kw)
    again.optimize(_toy, n_trials=8)
    assert [t.params for t in s.trials] == [t.params for t in again.trials]  # seeded
    assert all(t.state == TrialState.COMPLETE for t in s.trials)
    # from the 2nd trial on the NNI tuner proposes; values lie in Optuna's distributions
    assert s.sampler._tuner is not None and s.sampler._fed == set(range(8))
    assert all(t.params["h"] in (16, 32, 64) and 2 <= t.params["k"] <= 4 for t in s.trials)

    # resume in a "new process": a fresh sampler replays the 8 finished trials before proposing
    resumed = sampler(seed=1)
    s2 = optuna.load_study(study_name="a", storage=url, sampler=resumed)
    s2.optimize(_toy, n_trials=1)
    assert resumed._fed == set(range(9))
    if tuner == "tpe":
        assert len(resumed._tuner.tuner._history[("x",)]) == 9
    else:
        assert sum(i.result is not None for i in resumed._tuner.tuner.population) >= 8


def test_sampler_failed_pruned_and_enqueued_trials():
    sampler = NNISampler("evolution", seed=0, population=3)
    s = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    s.optimize(_toy, n_trials=2)
    tuner = sampler._tuner.tuner

    def boom(trial: optuna.Trial) -> tuple[float, float]:
        _toy(trial)
        raise RuntimeError("boom")

    s.optimize(boom, n_trials=1, catch=(RuntimeError,))
    assert s.trials[-1].state == TrialState.FAIL and not tuner.running_trials  # withdrawn

    def pruned(trial: optuna.Trial) -> tuple[float, float]:
        _toy(trial)
        trial.set_user_attr("intermediate", [[1, 0.5, 0.9]])
        raise optuna.TrialPruned()

    s.optimize(pruned, n_trials=1)
    rewards = sorted(i.result for i in tuner.population if i.result is not None)
    assert scalarize(0.5, 0.9) in rewards  # a pruned trial counts with its last point
    s.enqueue_trial({"x": 0.3, "lr": 0.01, "k": 4, "h": 64, "fixed": 1})
    s.optimize(_toy, n_trials=1)
    assert s.trials[-1].params["x"] == 0.3
    best = max(i.result for i in tuner.population if i.result is not None)
    assert best == pytest.approx(scalarize(*s.trials[-1].values))  # replayed into the tuner


def test_unavailable_and_unknown_tuners():
    with pytest.raises(StudyError, match="hyperopt"):
        NNISampler("anneal")
    with pytest.raises(StudyError, match="allowed: nni-tpe, nni-evolution"):
        NNISampler("smac")


_WITHOUT_NNI = """
import sys
sys.modules["nni"] = None  # as if the [nni] extra were not installed
import dsnet_automl, dsnet_automl.search, dsnet_automl.cli
from dsnet_automl.integrations.nni import require_nni, to_nni_search_space
assert to_nni_search_space("ds_resnet50_tiny")["stage1.depth"]["_value"] == [1, 2]
try:
    require_nni()
except Exception as e:
    print(type(e).__name__, e)
"""


def test_works_without_nni_and_one_line_error(monkeypatch, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_NNI], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.startswith("MissingExtraError NNI support needs the [nni] extra")
    assert "pip install -e '.[nni]'" in out and "\n" not in out

    monkeypatch.setitem(sys.modules, "nni", None)
    with pytest.raises(MissingExtraError):
        require_nni()
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nruns_dir: {tmp_path}\n")
    result = runner.invoke(app, ["search", str(study), "--sampler", "nni-evolution"])
    assert result.exit_code == 1
    assert "field 'sampler': NNI support needs the [nni] extra" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()
