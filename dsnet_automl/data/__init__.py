"""Datasets (all offline) and deterministic loaders.

Specs accepted by :func:`load_dataset`:

- ``digits``: scikit-learn's bundled 8x8 digits, upsampled to the input size.
- ``digits-hard`` (default demo): digits with per-sample difficulty (``dataset.difficulty``).
  ``digits-hard:K`` sets the copies per image (default 4), ``digits-hard:K:S`` also scales
  every corruption's strength by ``S`` (default 1; the routing ground uses 1.6, see README).
- ``imagefolder:PATH``: local class folders (unreadable images are skipped, or an error with
  ``bad_images="error"``). ``cifar10:PATH``: local CIFAR-10 python batches.
- ``synthetic`` / ``synthetic:N``: class templates plus noise, for shape tests.
"""

from __future__ import annotations

import functools

from ..errors import DataError
from .augment import make_views
from .base import (
    ArrayDataset,
    DataSplits,
    EpochBatchSampler,
    epoch_sampler,
    make_loader,
    make_loaders,
    split_tensors,
)
from .digits import corrupt, load_digits_splits
from .folders import (
    BAD_IMAGE_MODES,
    BAD_IMAGES_FILE,
    bad_images_summary,
    load_cifar10,
    load_imagefolder,
    reset_skipped_images,
    skipped_images,
)
from .synthetic import load_synthetic

__all__ = [
    "BAD_IMAGES_FILE",
    "BAD_IMAGE_MODES",
    "DATASET_SPECS",
    "ArrayDataset",
    "DataSplits",
    "EpochBatchSampler",
    "corrupt",
    "epoch_sampler",
    "eval_loaders",
    "load_dataset",
    "make_loader",
    "make_loaders",
    "make_views",
    "bad_images_summary",
    "reset_skipped_images",
    "skipped_images",
    "split_tensors",
]

DATASET_SPECS = (
    "digits",
    "digits-hard[:K[:S]]",
    "imagefolder:PATH",
    "cifar10:PATH",
    "synthetic[:N]",
)


def _severity_arg(spec: str, arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3:
        raise DataError(
            f"dataset {spec!r}: severity {arg!r} must be a number in (0, 3] (1: the default "
            "corruption range)"
        )
    return value


def _int_arg(spec: str, arg: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"dataset {spec!r}: {arg!r} must be a positive integer")
    return value


def load_dataset(
    spec: str,
    input_size: tuple[int, int, int] = (3, 32, 32),
    seed: int = 0,
    model: str | None = None,
    train_augment: dict | None = None,
    *,
    bad_images: str = "skip",
) -> DataSplits:
    """Train/val/test splits of a dataset spec (see the module docstring).

    Args:
        spec: dataset spec string.
        input_size: (C, H, W) the images are resized to (the supernet's input size).
        seed: fixes the split and, for ``digits-hard``, the corruptions.
        model: the supernet's name; image folders take mean, std and crop from a
            ``timm:<arch>``'s pretrained config (timm's ImageNet defaults otherwise).
        train_augment: image folders: extra ``timm.data.create_transform`` arguments of the
            training transform (``auto_augment``, ``color_jitter``, ``re_prob``).
        bad_images: image folders: ``skip`` (default) replaces an image that does not decode
            by the next readable one of its split, with a warning and a record in
            ``splits.bad_images``; ``error`` decodes every image once now and raises on the
            first bad one (see :mod:`dsnet_automl.data.folders`), as a task of the current
            :func:`dsnet_automl.progress.reporter`.

    Raises:
        DataError: unknown spec, or a missing/malformed local path (the message names the
            path and the expected layout); an image folder none of whose images decode, or,
            with ``bad_images="error"``, any image that does not.
    """
    input_size = tuple(int(s) for s in input_size)
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return load_digits_splits(False, input_size, seed)
    if kind == "digits-hard":
        copies, _, sev = arg.partition(":")
        return load_digits_splits(
            True,
            input_size,
            seed,
            _int_arg(spec, copies) if copies else 4,
            _severity_arg(spec, sev) if sev else 1.0,
        )
    if kind == "synthetic":
        return load_synthetic(_int_arg(spec, arg) if arg else 512, input_size, seed)
    if kind in ("imagefolder", "cifar10"):
        if not arg:
            raise DataError(f"dataset {spec!r} needs a local path: {kind}:PATH")
        if kind == "imagefolder":
            return load_imagefolder(
                arg,
                input_size,
                seed,
                model,
                train_augment,
                bad_images=bad_images,
            )
        return load_cifar10(arg, input_size, seed)
    raise DataError(f"unknown dataset {spec!r}; allowed: {', '.join(DATASET_SPECS)}")


@functools.lru_cache(maxsize=4)
def eval_loaders(
    spec: str,
    input_size: tuple[int, ...],
    seed: int = 0,
    batch_size: int = 256,
    model: str | None = None,
) -> tuple:
    """``(val, test)`` loaders of a dataset, built once per process (evaluation is read-only,
    so trials and baselines in one process share them); ``model`` as in :func:`load_dataset`."""
    splits = load_dataset(spec, tuple(input_size), seed, model)
    _, val, test = make_loaders(splits, batch_size, seed=seed)
    return val, test
