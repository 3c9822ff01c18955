"""Local image data for real users, never downloaded: ``imagefolder:PATH`` and ``cifar10:PATH``.

``imagefolder:PATH``: torchvision-style class folders, either ``PATH/<class>/<image>`` (split
80/10/10 by seed) or ``PATH/train/<class>/...`` with optional ``PATH/val/...`` and
``PATH/test/...`` (a missing val is split off train, a missing test reuses val). Images are
decoded lazily (PIL) through timm's data pipeline (:func:`image_transforms`): training images
get ``timm.data.create_transform(is_training=True)`` (random resized crop, horizontal flip,
colour jitter), val/test images a resize + centre crop; mean, std, interpolation and crop
fraction come from the model's ``pretrained_cfg`` for ``timm:<arch>`` supernets
(``resolve_data_config``), timm's ImageNet defaults otherwise. 1-channel inputs: grayscale,
resized, no augmentation.

``cifar10:PATH``: the standard python-pickle CIFAR-10 directory (``data_batch_1`` ..
``data_batch_5``, ``test_batch``; ``PATH`` may also be its parent holding
``cifar-10-batches-py``). Loaded into memory; 5000 training images are held out for val.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from ..errors import DataError
from .base import ArrayDataset, DataSplits

__all__ = ["load_cifar10", "load_imagefolder"]

_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)
_FOLDER_LAYOUT = "PATH/<class>/<image>.png|jpg or PATH/train/<class>/... (+ optional val/, test/)"
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _split(n: int, fracs: tuple[float, ...], seed: int) -> list[list[int]]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    out, start = [], 0
    for i, f in enumerate(fracs):
        end = n if i == len(fracs) - 1 else start + round(f * n)
        out.append(sorted(perm[start:end]))
        start = end
    return out


def data_config(model: str | None, input_size: tuple[int, int, int]) -> dict:
    """timm data config (mean, std, interpolation, crop_pct, crop_mode) for a supernet name:
    a ``timm:<arch>``'s pretrained_cfg, else timm's ImageNet defaults; at ``input_size``."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    pc = None
    if model and str(model).startswith("timm:"):
        pc = get_pretrained_cfg(str(model).removeprefix("timm:"))
    cfg = (
        resolve_data_config(pretrained_cfg=pc.to_dict())
        if pc is not None
        else resolve_data_config(args={"input_size": tuple(input_size)})
    )
    cfg["input_size"] = tuple(input_size)
    return cfg


def image_transforms(
    input_size: tuple[int, int, int], model: str | None = None, train_augment: dict | None = None
):
    """``(train, eval)`` transforms of PIL images for ``input_size`` and a supernet name;
    ``train_augment``: extra ``create_transform`` arguments of the training transform."""
    from timm.data import create_transform
    from torchvision import transforms

    c, h, w = input_size
    if c == 1:
        tf = transforms.Compose(
            [
                transforms.Grayscale(1),
                transforms.Resize((h, w)),
                transforms.ToTensor(),
                transforms.Normalize((0.5,), (0.25,)),
            ]
        )
        return tf, tf
    if c != 3:
        raise DataError(f"image folders need 1 or 3 input channels, the input size is {input_size}")
    cfg = data_config(model, input_size)
    rgb = transforms.Lambda(lambda im: im.convert("RGB"))
    common = {"mean": cfg["mean"], "std": cfg["std"], "interpolation": cfg["interpolation"]}
    extra = {k: v for k, v in (train_augment or {}).items() if v is not None}
    try:
        train = create_transform(tuple(input_size), is_training=True, **common, **extra)
    except (ValueError, KeyError, AssertionError) as e:
        raise DataError(f"training augmentation {extra}: timm refused it ({e})") from None
    evalt = create_transform(
        tuple(input_size),
        is_training=False,
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg.get("crop_mode", "center"),
        **common,
    )
    return transforms.Compose([rgb, train]), transforms.Compose([rgb, evalt])


def _image_folder(root: Path, transform) -> Dataset:
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, OSError) as e:
        raise DataError(
            f"imagefolder:{root}: no class folders with images ({e}); expected {_FOLDER_LAYOUT}"
        ) from None


def load_imagefolder(
    path: str | Path,
    input_size: tuple[int, int, int],
    seed: int = 0,
    model: str | None = None,
    train_augment: dict | None = None,
) -> DataSplits:
    """Splits of a local class-folder tree (see the module docstring); ``model`` is the
    supernet name whose data config (mean, std, crop) the transforms use."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder:{path}: directory does not exist; expected {_FOLDER_LAYOUT}")
    train_tf, eval_tf = image_transforms(tuple(input_size), model, train_augment)
    if (root / "train").is_dir():
        train = _image_folder(root / "train", train_tf)
        if (root / "val").is_dir():
            val = _image_folder(root / "val", eval_tf)
        else:
            tr, va = _split(len(train), (0.9, 0.1), seed)
            train, val = Subset(train, tr), Subset(_image_folder(root / "train", eval_tf), va)
        test = _image_folder(root / "test", eval_tf) if (root / "test").is_dir() else val
        base = train.dataset if isinstance(train, Subset) else train
    else:
        full = _image_folder(root, train_tf)
        full_eval = _image_folder(root, eval_tf)
        tr, va, te = _split(len(full), (0.8, 0.1, 0.1), seed)
        train, val, test = Subset(full, tr), Subset(full_eval, va), Subset(full_eval, te)
        base = full
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"imagefolder:{path}: too few images to split; expected {_FOLDER_LAYOUT}")
    return DataSplits(
        name=f"imagefolder:{path}",
        train=train,
        val=val,
        test=test,
        num_classes=len(base.classes),
        input_size=tuple(input_size),
        flip_ok=True,
        classes=list(base.classes),
    )


def _read_batch(f: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # noqa: BLE001 - any failure means a malformed file
        raise DataError(
            f"cifar10: {f} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); "
            "expected the files of cifar-10-python.tar.gz"
        ) from None
    return x, y


def load_cifar10(path: str | Path, input_size: tuple[int, int, int], seed: int = 0) -> DataSplits:
    """CIFAR-10 from a local python-pickle directory (see the module docstring)."""
    root = Path(path).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [f for f in _CIFAR_FILES if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"cifar10:{path}: missing {', '.join(missing)}; expected a directory with "
            f"{', '.join(_CIFAR_FILES)} (extract cifar-10-python.tar.gz there)"
        )
    if input_size[0] != 3:
        raise DataError(f"cifar10:{path}: images have 3 channels, input size is {input_size}")
    parts = [_read_batch(root / f) for f in _CIFAR_FILES]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    mean = torch.tensor(_CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_CIFAR_STD).view(1, 3, 1, 1)

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).float() / 255.0
        if tuple(t.shape[2:]) != tuple(input_size[1:]):
            t = F.interpolate(t, size=input_size[1:], mode="bilinear", align_corners=False)
        return (t - mean) / std

    tr, va = _split(len(ytr), (0.9, 0.1), seed)
    x_all, y_all = prep(xtr), torch.from_numpy(ytr)
    return DataSplits(
        name=f"cifar10:{path}",
        train=ArrayDataset(x_all[tr], y_all[tr]),
        val=ArrayDataset(x_all[va], y_all[va]),
        test=ArrayDataset(prep(parts[5][0]), torch.from_numpy(parts[5][1])),
        num_classes=10,
        input_size=tuple(input_size),
        flip_ok=True,
        classes=[
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
    )
