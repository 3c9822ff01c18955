"""Datasets: digits / digits-hard / synthetic / local folders, loaders, augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dsnet_automl.data import (
    EpochBatchSampler,
    load_dataset,
    make_loaders,
    make_views,
)
from dsnet_automl.errors import DataError


def test_digits_shapes_split_and_determinism():
    a = load_dataset("digits", (3, 32, 32), seed=0)
    assert a.sizes() == {"train": 1257, "val": 180, "test": 360}
    assert sum(a.sizes().values()) == 1797
    x, y = a.train[[0, 1, 2]]
    assert x.shape == (3, 3, 32, 32) and y.shape == (3,)
    assert torch.equal(x[:, 0], x[:, 2])  # grey repeated over channels
    load_dataset.__wrapped__ if hasattr(load_dataset, "__wrapped__") else None
    b = load_dataset("digits", (1, 16, 16), seed=1)
    assert b.train.x.shape[1:] == (1, 16, 16)
    assert not torch.equal(a.test.y, load_dataset("digits", (3, 32, 32), seed=1).test.y)


def test_digits_hard_difficulty_spread_and_no_leak():
    d = load_dataset("digits-hard", (3, 32, 32), seed=0)
    clean = load_dataset("digits", (3, 32, 32), seed=0)
    assert len(d.train) == 4 * len(clean.train) and len(d.test) == 4 * len(clean.test)
    diff = d.test.difficulty
    assert diff.min() >= 0 and diff.max() <= 1
    # stratified: each quarter of [0, 1] holds a quarter of the samples
    counts = torch.histc(diff, bins=4, min=0, max=1)
    assert torch.equal(counts, torch.full((4,), len(clean.test), dtype=counts.dtype))
    # corruption grows with difficulty: distance to the clean image of the same digit
    n = len(clean.test)
    dist = (d.test.x - clean.test.x.repeat(4, 1, 1, 1)).pow(2).mean((1, 2, 3))
    per_copy = [dist[k * n : (k + 1) * n].mean().item() for k in range(4)]
    assert per_copy == sorted(per_copy) and per_copy[0] < 0.25 * per_copy[-1]
    # deterministic by seed
    again = load_dataset("digits-hard", (3, 32, 32), seed=0)
    assert again.test is d.test or torch.equal(again.test.x, d.test.x)


def test_digits_hard_small_model_accuracy_falls_with_difficulty():
    """Independent check with a plain scikit-learn classifier on pooled pixels."""
    from sklearn.linear_model import LogisticRegression

    d = load_dataset("digits-hard", (1, 16, 16), seed=0)

    def feats(ds):
        return torch.nn.functional.avg_pool2d(ds.x, 2).flatten(1).numpy()

    clf = LogisticRegression(max_iter=300, C=0.5).fit(feats(d.train), d.train.y.numpy())
    correct = clf.predict(feats(d.test)) == d.test.y.numpy()
    diff = d.test.difficulty.numpy()
    bins = [correct[(diff >= lo) & (diff < lo + 0.25)].mean() for lo in (0, 0.25, 0.5, 0.75)]
    assert bins[0] > 0.9
    assert bins[0] > bins[1] > bins[2] > bins[3]
    assert bins[0] - bins[3] > 0.25


def test_synthetic_and_unknown_specs():
    s = load_dataset("synthetic:40", (3, 8, 8))
    assert s.sizes() == {"train": 40, "val": 10, "test": 10}
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*digits-hard"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="positive integer"):
        load_dataset("digits-hard:zero")


def test_missing_and_malformed_paths(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=rf"{missing}.*does not exist.*expected PATH/<class>"):
        load_dataset(f"imagefolder:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"imagefolder:{empty}.*no class folders.*expected"):
        load_dataset(f"imagefolder:{empty}")
    with pytest.raises(DataError, match=r"missing data_batch_1.*test_batch.*expected"):
        load_dataset(f"cifar10:{missing}")
    bad = tmp_path / "cifar"
    bad.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (bad / name).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{bad}")
    with pytest.raises(DataError, match="needs a local path"):
        load_dataset("cifar10")


def test_cifar10_local_directory(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, 20)),
        }
        (root / name).write_bytes(pickle.dumps(d))
    s = load_dataset(f"cifar10:{tmp_path}", (3, 32, 32))
    assert s.sizes() == {"train": 90, "val": 10, "test": 20} and s.flip_ok


def test_imagefolder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            arr = np.full((12, 12, 3), 40 if cls == "cat" else 200, dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    s = load_dataset(f"imagefolder:{tmp_path}", (3, 16, 16))
    assert s.num_classes == 2 and s.classes == ["cat", "dog"]
    assert s.sizes() == {"train": 16, "val": 2, "test": 2}
    tr, _, _ = make_loaders(s, 4)
    x, y = next(iter(tr))
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,)


def test_epoch_batch_sampler_order_and_offset():
    s = EpochBatchSampler(10, 3, shuffle=True, seed=5, drop_last=True)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 3 and all(len(b) == 3 for b in full)
    s.set_epoch(2, start_batch=1)
    assert list(s) == full[1:]
    s.set_epoch(3)
    assert list(s) != full
    ordered = EpochBatchSampler(5, 2, shuffle=False)
    assert list(ordered) == [[0, 1], [2, 3], [4]]


def test_views_are_label_preserving_small_and_reproducible():
    x = load_dataset("digits", (3, 32, 32)).test.x[:16]
    v1 = make_views(x, torch.Generator().manual_seed(0), 2)
    v2 = make_views(x, torch.Generator().manual_seed(0), 2)
    assert torch.equal(v1[0], v2[0]) and not torch.equal(v1[0], v1[1])
    # small shifts: each view stays closer to its own image than to other images
    d_own = (v1[0] - x).pow(2).mean((1, 2, 3))
    d_other = (v1[0] - x.roll(1, 0)).pow(2).mean((1, 2, 3))
    assert (d_own < d_other).float().mean() > 0.8


def test_imagefolder_uses_timms_pipeline_per_model(tmp_path):
    from PIL import Image

    from dsnet_automl.data.folders import data_config

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(10):  # different sizes and aspect ratios
            arr = rng.integers(0, 255, (20 + 3 * i, 30 + i, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    s = load_dataset(f"imagefolder:{tmp_path}", (3, 24, 24), model="timm:resnet18")
    x1, _ = s.train[0]
    x2, _ = s.train[0]
    assert x1.shape == (3, 24, 24) and not torch.equal(x1, x2)  # random resized crop / flip
    e1, _ = s.val[0]
    e2, _ = s.val[0]
    assert e1.shape == (3, 24, 24) and torch.equal(e1, e2)  # resize + centre crop
    names = [type(t).__name__ for t in s.val.dataset.transform.transforms[1].transforms]
    assert names[:2] == ["Resize", "CenterCrop"]
    # mean/std/interpolation/crop from the model's pretrained_cfg; timm's defaults otherwise
    vit = data_config("timm:vit_small_patch16_224", (3, 224, 224))
    assert vit["mean"] == (0.5, 0.5, 0.5) and vit["interpolation"] == "bicubic"
    assert vit["crop_pct"] == 0.9
    assert data_config("ds_mobilenet_v1", (3, 224, 224))["mean"] == (0.485, 0.456, 0.406)
    # timm's augmentation options, by timm's names
    aug = {"auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25}
    s = load_dataset(f"imagefolder:{tmp_path}", (3, 24, 24), train_augment=aug)
    names = [type(t).__name__ for t in s.train.dataset.transform.transforms[1].transforms]
    assert "RandAugment" in names and "RandomErasing" in names
    with pytest.raises(DataError, match="timm refused it"):
        load_dataset(f"imagefolder:{tmp_path}", (3, 24, 24), train_augment={"auto_augment": "x"})


def test_digits_hard_severity_scales_the_corruptions():
    base = load_dataset("digits-hard", (1, 16, 16), seed=0)
    hard = load_dataset("digits-hard:4:1.6", (1, 16, 16), seed=0)
    assert len(hard.train) == len(base.train) and hard.num_classes == 10
    # the same per-sample difficulty, stronger corruption: further from the clean image
    assert torch.equal(hard.test.difficulty, base.test.difficulty)
    clean = load_dataset("digits", (1, 16, 16), seed=0)
    n = len(clean.test)
    last = slice(3 * n, 4 * n)  # the most corrupted copy of each test image
    d_base = (base.test.x[last] - clean.test.x).abs().mean()
    d_hard = (hard.test.x[last] - clean.test.x).abs().mean()
    assert d_hard > d_base
    for bad in ("digits-hard:4:0", "digits-hard:4:x", "digits-hard:4:5"):
        with pytest.raises(DataError, match="severity"):
            load_dataset(bad, (1, 16, 16), seed=0)
