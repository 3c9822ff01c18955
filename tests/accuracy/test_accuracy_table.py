"""AccuracyTable: measured once, reused across calls and objects, keyed by checkpoint; and the
accuracy predictor's held-out metrics."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from dsnet_automl import create_supernet
from dsnet_automl.accuracy import table as at
from dsnet_automl.accuracy.predictor import config_features, fit_predictor
from dsnet_automl.accuracy.table import AccuracyTable, checkpoint_hash
from dsnet_automl.config import SubnetConfig
from dsnet_automl.errors import CheckpointError, SearchSpaceError

DATA = "synthetic:64"


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_supernet("ds_mobilenet_v1_tiny").eval()


@pytest.fixture(scope="module")
def configs(net) -> list[SubnetConfig]:
    rng = random.Random(0)
    cfgs = [net.space.smallest(), net.space.largest()]
    cfgs += [net.space.sample(rng) for _ in range(3)]
    return list(dict.fromkeys(cfgs))


@pytest.fixture
def counted(monkeypatch) -> list[SubnetConfig]:
    """Every config the accuracy table actually runs is appended here."""
    calls: list[SubnetConfig] = []
    real = at.subnet_top1

    def spy(net, x, y, cfg, batch_size, device):
        calls.append(cfg)
        return real(net, x, y, cfg, batch_size, device)

    monkeypatch.setattr(at, "subnet_top1", spy)
    return calls


def test_evaluates_each_config_once(tmp_path, net, configs, counted):
    url = f"sqlite:///{tmp_path / 'acc.db'}"
    table = AccuracyTable(url)
    first = table.evaluate(net, configs, ckpt_hash="aaaa", data=DATA, split="val")
    assert list(first) == configs
    assert len(counted) == len(configs) and table.last_evaluated == len(configs)
    assert all(0.0 <= v <= 1.0 for v in first.values())

    again = table.evaluate(net, configs, ckpt_hash="aaaa", data=DATA, split="val")
    assert again == first and len(counted) == len(configs) and table.last_evaluated == 0

    # a re-run: a new object on the same file (and one that went through pickle)
    rerun = pickle.loads(pickle.dumps(AccuracyTable(url)))
    assert rerun.lookup("aaaa", DATA, "val", configs) == first
    assert rerun.evaluate(net, configs, ckpt_hash="aaaa", data=DATA, split="val") == first
    assert len(counted) == len(configs) and rerun.last_evaluated == 0

    # a subset plus one new config: only the new one runs
    extra = net.space.config(**{"stage4.width": 64, "stage5.width": 128})
    assert extra not in configs
    out = rerun.evaluate(net, [configs[0], extra], ckpt_hash="aaaa", data=DATA, split="val")
    assert counted[-1] == extra and len(counted) == len(configs) + 1
    assert out[configs[0]] == first[configs[0]]


def test_measured_value_matches_plain_accuracy(tmp_path, net, configs):
    from dsnet_automl.data import load_dataset, make_loaders
    from dsnet_automl.training.evaluate import accuracy

    table = AccuracyTable(f"sqlite:///{tmp_path / 'acc.db'}")
    got = table.evaluate(net, configs[:2], ckpt_hash="h", data=DATA, split="val", batch_size=7)
    _, val, _ = make_loaders(load_dataset(DATA, net.input_size, seed=0), 16)
    for cfg in configs[:2]:
        assert got[cfg] == pytest.approx(accuracy(net, val, cfg)[0], abs=1e-12)


def test_other_checkpoint_split_or_seed_is_not_reused(tmp_path, net, configs, counted):
    table = AccuracyTable(f"sqlite:///{tmp_path / 'acc.db'}")
    cfgs = configs[:2]
    table.evaluate(net, cfgs, ckpt_hash="aaaa", data=DATA, split="val")
    assert table.lookup("bbbb", DATA, "val", cfgs) == {}
    table.evaluate(net, cfgs, ckpt_hash="bbbb", data=DATA, split="val")
    assert len(counted) == 4
    table.evaluate(net, cfgs, ckpt_hash="aaaa", data=DATA, split="test")
    table.evaluate(net, cfgs, ckpt_hash="aaaa", data=DATA, split="val", seed=1)
    assert len(counted) == 8
    df = table.to_frame("aaaa", DATA)
    assert len(df) == 6 and set(df["split"]) == {"val", "test"}
    assert {"top1", "n_samples", "seconds", "config", "stage4.width"} <= set(df.columns)
    assert (df["n_samples"] == 16).all()


def test_checkpoint_hash(tmp_path):
    p = tmp_path / "c.pt"
    p.write_bytes(b"abc")
    h = checkpoint_hash(p)
    assert len(h) == 16 and h == checkpoint_hash(str(p))
    p.write_bytes(b"abcd")
    assert checkpoint_hash(p) != h
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_hash(tmp_path / "missing.pt")


def test_bad_split_names_allowed(tmp_path, net, configs):
    table = AccuracyTable(f"sqlite:///{tmp_path / 'acc.db'}")
    with pytest.raises(ValueError, match="split 'dev' is not one of train, val, test"):
        table.evaluate(net, configs[:1], ckpt_hash="h", data=DATA, split="dev")


# ------------------------------------------------------------------------- predictor
def _synthetic_target(space, cfgs, seed: int = 0) -> np.ndarray:
    """Monotone in every width (value / capacity), plus noise."""
    rng = np.random.default_rng(seed)
    x = config_features(space, cfgs, encoding="value")
    return 0.5 + 0.4 * np.log1p(x @ np.linspace(1.0, 2.0, x.shape[1])) + rng.normal(0, 0.02, len(x))


def test_predictor_holdout_is_disjoint_and_ranks(net):
    space = net.space
    rng = random.Random(1)
    cfgs = list(dict.fromkeys(space.sample(rng) for _ in range(160)))
    y = _synthetic_target(space, cfgs)
    pred, m = fit_predictor(space, cfgs, y, holdout=0.25, seed=0, models=["ridge_poly2", "gbr"])
    held = set(m["holdout_index"])
    assert m["n_holdout"] == len(held) and m["n_train"] + m["n_holdout"] == len(cfgs)
    fit_set = {cfgs[i] for i in range(len(cfgs)) if i not in held}
    assert fit_set.isdisjoint(cfgs[i] for i in held) and len(fit_set) == m["n_train"]
    assert m["kendall_tau"] > 0.3 and m["rmse"] < 0.1
    assert m["model"] in m["candidates"]
    again = pickle.loads(pickle.dumps(pred))
    np.testing.assert_allclose(again.predict(cfgs[:5]), pred.predict(cfgs[:5]))
    assert pred.predict(cfgs).shape == (len(cfgs),)


def test_config_features_shapes_and_errors(net):
    space = net.space
    cfgs = [space.smallest(), space.largest()]
    idx = config_features(space, cfgs)
    assert idx.shape == (2, len(space.dims))
    np.testing.assert_array_equal(idx, [[0.0] * 6, [1.0] * 6])
    onehot = config_features(space, cfgs, encoding="onehot")
    assert onehot.shape == (2, sum(len(c) for _, c in space.dims))
    assert (onehot.sum(1) == len(space.dims)).all()
    with pytest.raises(SearchSpaceError, match="encoding 'rank'"):
        config_features(space, cfgs, encoding="rank")
    bad = SubnetConfig.of(space.supernet, {**space.largest().as_dict(), "stem.width": 12})
    with pytest.raises(SearchSpaceError, match=r"stem.width=12, not in \[8, 16\]"):
        config_features(space, [bad])
