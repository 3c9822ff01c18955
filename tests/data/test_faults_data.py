"""Fault tests: unreadable images in an image folder (truncated or garbage PNGs, written here).

A run skips them (warning, per-epoch summary, RUN/bad_images.txt) instead of ending in a PIL
traceback; ``--bad-images error`` checks every image first and stops at the first bad one.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.data import load_dataset, make_loaders
from dsnet_automl.errors import DataError

runner = CliRunner()
FAST = ["--space", "ds_mobilenet_v1_tiny", "--num-random", "1", "--no-progress"]


def _png(rng: np.random.Generator, size: int, colour: tuple[int, int, int]) -> bytes:
    a = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    a[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = colour
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _truncated(png: bytes) -> bytes:
    """A PNG cut short: its first 40 bytes (signature, header, start of the data), then junk."""
    return png[:40] + b"\x00\x17garbage" * 8


def _folder(root, bad=(), n=24):
    """``n`` PNGs of 8x8 .. 32x32 in 3 class folders; the indices in ``bad`` truncated.
    -> the paths, in index order."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        c = i % 3
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        png = _png(rng, 8 + 8 * (i % 4), ((220, 40, 40), (40, 200, 40), (40, 40, 220))[c])
        p = d / f"img{i:02d}.png"
        p.write_bytes(_truncated(png) if i in bad else png)
        paths.append(p)
    return paths


def _cli(args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One Stage I epoch on a folder of 24 PNGs, one of them truncated (all images are seen:
    a batch larger than the train split, then val and test evaluation)."""
    root = tmp_path_factory.mktemp("faults_data")
    bad = _folder(root / "images", bad=(7,))[7]
    out = root / "run"
    data = f"imagefolder:{root / 'images'}"
    args = ["train-supernet", *FAST, "--data", data, "--epochs", "1", "--batch-size", "32"]
    return _cli([*args, "--out", out]), out, bad, data


@pytest.mark.fault(
    fault="an image file of the training folder is truncated (PIL cannot decode it)",
    injected="a PNG cut to its first 40 bytes plus junk, 1 of 24 images in imagefolder:DIR",
    sees="a warning naming the file, then after each epoch: 1 image file skipped "
    "(unreadable): PATH; full list in RUN/bad_images.txt",
    kept="the run completes (checkpoint, metrics); the next readable image stands in for "
    "it; RUN/bad_images.txt lists it",
)
def test_truncated_image_is_skipped_and_listed(trained):
    r, out, bad, _ = trained
    assert r.exit_code == 0, r.output
    assert (out / "checkpoint.pt").is_file() and (out / "test_top1.csv").is_file()
    assert f"skipping unreadable image {bad}" in r.output
    assert f"1 image file skipped (unreadable): {bad}; full list in {out / 'bad_images.txt'}" in (
        r.output
    )
    assert "Traceback" not in r.output
    lines = (out / "bad_images.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}\t")


@pytest.mark.fault(
    fault="an evaluation split holds an unreadable image",
    injected="the truncated PNG of the training folder, evaluated by eval-supernet --split train",
    sees="the accuracy table, then one line: 1 image file skipped (unreadable): PATH",
    kept="the evaluation completes over the readable images",
)
def test_eval_skips_and_reports(trained):
    _, out, bad, _ = trained
    r = _cli(["eval-supernet", out / "checkpoint.pt", "--split", "train", "--configs", "smallest"])
    assert r.exit_code == 0, r.output
    assert f"1 image file skipped (unreadable): {bad}" in r.output


@pytest.mark.fault(
    fault="a truncated image file, with --bad-images error",
    injected="a PNG cut to its first 40 bytes plus junk, 1 of 24 images in imagefolder:DIR",
    sees="one red line: error: imagefolder:DIR: cannot decode PATH (reason); fix or remove "
    "the file, or skip unreadable images (--bad-images skip); exit 1",
    kept="nothing is trained or written; fix the file and run the same command again",
)
def test_bad_images_error_stops_before_training(tmp_path):
    bad = _folder(tmp_path / "images", bad=(13,))[13]
    out = tmp_path / "run"
    data = f"imagefolder:{tmp_path / 'images'}"
    args = ["train-supernet", *FAST, "--data", data, "--epochs", "1", "--out", out]
    r = _cli([*args, "--bad-images", "error"])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert lines[0].startswith("error: ") and f"cannot decode {bad} (" in lines[0]
    assert not (out / "checkpoint.pt").exists()
    r = _cli([*args, "--bad-images", "sometimes"])
    assert r.exit_code == 1 and "--bad-images 'sometimes'; allowed: skip, error" in r.output


@pytest.mark.fault(
    fault="no image of the folder can be decoded",
    injected="24 PNGs, every one cut to its first 40 bytes plus junk",
    sees="one red line: error: imagefolder:DIR: none of the 24 images could be decoded "
    "(first: PATH: reason); exit 1",
    kept="nothing is trained or written",
)
def test_all_images_bad_is_one_line(tmp_path):
    first = _folder(tmp_path / "images", bad=range(24))[0]
    out = tmp_path / "run"
    data = f"imagefolder:{tmp_path / 'images'}"
    r = _cli(["train-supernet", *FAST, "--data", data, "--epochs", "1", "--out", out])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert f"none of the 24 images could be decoded (first: {first}: " in lines[0]
    assert not (out / "checkpoint.pt").exists()


def test_skipping_keeps_batches_full_and_deterministic(tmp_path):
    """The library side: a bad image's place goes to the next readable image of its split (the
    same one every time), batches stay full, and a DataLoader worker process's finds reach the
    run's file."""
    paths = _folder(tmp_path / "images", bad=(1, 2, 5))
    bad = {str(paths[i]) for i in (1, 2, 5)}
    splits = load_dataset(f"imagefolder:{tmp_path / 'images'}", (3, 16, 16))
    splits.image_log.attach(tmp_path / "bad_images.txt")
    train = splits.train
    files = [str(train.dataset.samples[i][0]) for i in train.indices]
    label = [train.dataset.samples[i][1] for i in train.indices]
    n = len(files)
    for k in range(n):  # labels: the training transform itself is random
        stand_in = next((k + s) % n for s in range(n) if files[(k + s) % n] not in bad)
        assert train[k][1] == label[stand_in]
    loader, _, _ = make_loaders(splits, n, num_workers=1)
    ((xb, _),) = list(loader)
    assert len(xb) == n
    in_train = bad & set(files)
    recorded = {p for p, _ in splits.bad_images}  # the worker's finds come from the file
    assert in_train and in_train <= recorded <= bad
    listed = {ln.split("\t")[0] for ln in (tmp_path / "bad_images.txt").read_text().splitlines()}
    assert listed == recorded
    with pytest.raises(DataError, match="cannot decode"):
        load_dataset(f"imagefolder:{tmp_path / 'images'}", (3, 16, 16), bad_images="error")


@pytest.mark.fault(
    fault="a truncated image file in the data of gate training (Stage II)",
    injected="the truncated PNG of the Stage I folder, read again by train-gate",
    sees="after each epoch: 1 image file skipped (unreadable): PATH; full list in "
    "OUT/bad_images.txt",
    kept="the gate trains and the bundle is written; OUT/bad_images.txt lists the file",
)
def test_gate_training_skips_and_run_data_can_refuse(trained, tmp_path):
    _, out, bad, data = trained
    gate = tmp_path / "gate"
    r = _cli(["train-gate", out / "checkpoint.pt", "--out", gate, "--epochs", "1"]
             + ["--routes", "2", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"1 image file skipped (unreadable): {bad}; full list in {gate / 'bad_images.txt'}" in (
        r.output
    )
    assert (gate / "bad_images.txt").read_text().startswith(f"{bad}\t")
    # run --data with --bad-images error: the whole folder is checked first, one line
    r = _cli(["run", gate, "--data", data, "--bad-images", "error"])
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and f"cannot decode {bad} (" in r.output, r.output
