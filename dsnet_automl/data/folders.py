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

Unreadable images (``bad_images``): a file that PIL cannot decode (truncated, not an image,
a decompression bomb) does not end a run. With ``bad_images="skip"`` (the default) a split
(:class:`SkippingSplit`) replaces it by the next image of the same split that decodes (index
``i+1, i+2, ...`` modulo the split's length: deterministic, so batch sizes, the epoch's batch
order and mid-epoch resume are unchanged), logs a warning naming it (logger
``dsnet_automl.data``; the first few per process) and records ``(path, reason)`` in the splits'
:class:`BadImageLog` (``splits.bad_images``). A run attaches the log to ``RUN/bad_images.txt``
(:meth:`BadImageLog.attach`): DataLoader worker processes share no memory, so the file, one
``path<TAB>reason`` line per image, is the cross-process record. Loading probes each split for
its first readable image, so a folder (or split) where every image is bad is one
:class:`~dsnet_automl.errors.DataError` before anything trains. With ``bad_images="error"``
every image is decoded once at load (a task of :func:`dsnet_automl.progress.reporter`) and the
first bad one is a :class:`~dsnet_automl.errors.DataError` naming it. In an evaluation split a
skipped image's stand-in is counted twice; with a few bad files among many the top-1 moves by
at most (bad files / split size), and the summary names them.

``cifar10:PATH``: the standard python-pickle CIFAR-10 directory (``data_batch_1`` ..
``data_batch_5``, ``test_batch``; ``PATH`` may also be its parent holding
``cifar-10-batches-py``). Loaded into memory; 5000 training images are held out for val.
"""

from __future__ import annotations

import copy
import logging
import pickle
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from ..errors import DataError
from ..progress import track
from .base import ArrayDataset, DataSplits

__all__ = [
    "BAD_IMAGES_FILE",
    "BAD_IMAGE_MODES",
    "BadImageLog",
    "SkippingSplit",
    "bad_images_summary",
    "load_cifar10",
    "load_imagefolder",
    "reset_skipped_images",
    "skipped_images",
]

log = logging.getLogger("dsnet_automl.data")

BAD_IMAGE_MODES = ("skip", "error")
BAD_IMAGES_FILE = "bad_images.txt"  # in a run directory: every image skipped, one per line
_WARN_LIMIT = 5  # per-image warnings per process; the rest only in summaries and the file
_SEEN: dict[str, str] = {}  # every image skipped in this process: path -> reason
_warned = [0]

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


def skipped_images() -> list[tuple[str, str]]:
    """``(path, reason)`` of every image skipped in this process so far (all splits, all
    datasets, first-seen order; worker processes' finds are in their run's ``bad_images.txt``)."""
    return list(_SEEN.items())


def reset_skipped_images() -> None:
    """Forget :func:`skipped_images` (the CLI does this when a command starts)."""
    _SEEN.clear()
    _warned[0] = 0


def bad_images_summary(
    entries: Sequence[tuple[str, str]], file: str | Path | None = None, show: int = 3
) -> str | None:
    """One line about skipped images (``None`` when there are none): their count, the first
    ``show`` paths and, with ``file``, where the full list is."""
    n = len(entries)
    if not n:
        return None
    names = ", ".join(str(p) for p, _ in entries[:show])
    names += f" (+{n - show} more)" if n > show else ""
    line = f"{n} image file{'s' * (n != 1)} skipped (unreadable): {names}"
    return f"{line}; full list in {file}" if file is not None else line


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    # UnidentifiedImageError and "Truncated File Read" are OSErrors
    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _reason(e: BaseException) -> str:
    msg = re.sub(r" ?<_io\.\w+ name=[^>]*>", "", str(e))  # PIL repeats the path: drop it
    text = " ".join(f"{type(e).__name__}: {msg}".split())
    return text if len(text) <= 120 else text[:117] + "..."


def _read_list(file: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        path, _, reason = line.partition("\t")
        if path:
            out.setdefault(path, reason)
    return out


class BadImageLog:
    """The images a dataset's splits skipped: ``(path, reason)`` in memory and, once
    :meth:`attach` ed to a file (``RUN/bad_images.txt``), appended there by whichever process
    (DataLoader workers included) meets them, one ``path<TAB>reason`` line each, deduplicated."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.file: Path | None = None
        self.quiet = False  # while loading probes the splits: warn afterwards, or not at all
        self._pending: list[str] = []

    def attach(self, file: str | Path) -> None:
        """Record to ``file`` from now on (what is already known is written at once)."""
        self.file = Path(file)
        for path, reason in self.entries.items():
            self._append(path, reason)

    def add(self, path: str, reason: str) -> None:
        if path in self.entries:
            return
        self.entries[path] = reason
        _SEEN.setdefault(path, reason)
        if self.file is not None and path in _read_list(self.file):
            return  # another process (an earlier epoch's worker) met and reported it
        if self.quiet:
            self._pending.append(path)
        else:
            self._warn(path)
        if self.file is not None:
            self._write(path, reason)  # not in the file: checked above

    def flush_warnings(self) -> None:
        """Warn about the images found while :attr:`quiet`."""
        pending, self._pending = self._pending, []
        for path in pending:
            self._warn(path)

    def _warn(self, path: str) -> None:
        _warned[0] += 1
        if _warned[0] <= _WARN_LIMIT:
            log.warning("skipping unreadable image %s (%s)", path, self.entries[path])
        elif _warned[0] == _WARN_LIMIT + 1:
            log.warning("more unreadable images skipped; they are counted in the summaries")

    def _append(self, path: str, reason: str) -> None:
        assert self.file is not None
        if path not in _read_list(self.file):
            self._write(path, reason)

    def _write(self, path: str, reason: str) -> None:
        assert self.file is not None
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.file, "a", encoding="utf-8") as fh:  # one write per line
                fh.write(f"{path}\t{reason}\n")
        except OSError as e:  # the record is a convenience: never end a run over it
            log.warning("cannot record %s in %s (%s)", path, self.file, e)

    def read(self) -> list[tuple[str, str]]:
        """Every skipped image: this process's and, with a file, every process's."""
        merged = _read_list(self.file) if self.file is not None and self.file.is_file() else {}
        for path, reason in self.entries.items():
            merged.setdefault(path, reason)
        return list(merged.items())

    def summary(self) -> str | None:
        """:func:`bad_images_summary` of :meth:`read`."""
        return bad_images_summary(self.read(), self.file)


class _Images:
    """One class-folder tree (torchvision's ``ImageFolder`` file list) whose images decode
    lazily; an index that does not decode is remembered and logged (``mode="skip"``) or is a
    :class:`DataError` (``mode="error"``)."""

    def __init__(self, root: Path, log_: BadImageLog, mode: str) -> None:
        from torchvision import datasets

        try:
            folder = datasets.ImageFolder(str(root))
        except (FileNotFoundError, OSError) as e:
            raise DataError(
                f"imagefolder:{root}: no class folders with images ({e}); expected {_FOLDER_LAYOUT}"
            ) from None
        self.name, self.mode, self.log = f"imagefolder:{root}", mode, log_
        self.loader, self.samples, self.classes = folder.loader, folder.samples, folder.classes
        self.bad: dict[int, str] = {}
        self.transform: Any = None

    def with_transform(self, transform) -> _Images:
        """The same images (and bad-image record) seen through ``transform``."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Any:
        """The PIL image of sample ``i``, or ``None`` if it does not decode (skip mode)."""
        path = self.samples[i][0]
        if i in self.bad:
            _SEEN.setdefault(path, self.bad[i])  # still skipped (after a reset_skipped_images)
            return None
        try:
            return self.loader(path)
        except _decode_errors() as e:
            self.bad[i] = reason = _reason(e)
            if self.mode == "error":
                raise DataError(
                    f"{self.name}: cannot decode {path} ({reason}); fix or remove the file, or "
                    "skip unreadable images (--bad-images skip)"
                ) from None
            self.log.add(path, reason)
            return None

    def none_readable(self, indices: Sequence[int], split: str) -> DataError:
        """The error of a split none of whose ``indices`` decode (of the whole folder if none
        of its images do)."""
        if not any(self.load(i) is not None for i in range(len(self))):
            indices, split = range(len(self)), ""
        first = min(indices)  # every index here is in self.bad
        what = f"{len(indices)} {split + ' ' if split else ''}images"
        return DataError(
            f"{self.name}: none of the {what} could be decoded "
            f"(first: {self.samples[first][0]}: {self.bad.get(first, 'unreadable')})"
        )


class SkippingSplit(Subset):
    """A split of an image folder: sample ``k`` is image ``indices[k]`` through the folder
    view's ``transform``; one that does not decode is replaced by the next one that does
    (``k+1, k+2, ...`` modulo the split's length), so every batch stays full and the order
    stays deterministic."""

    def __init__(self, images: _Images, indices: Iterable[int], transform, split: str) -> None:
        super().__init__(images.with_transform(transform), list(indices))  # type: ignore[arg-type]
        self.split = split

    def __getitem__(self, idx):  # type: ignore[override]
        if isinstance(idx, list):
            return [self[i] for i in idx]
        images: _Images = self.dataset  # type: ignore[assignment]
        n = len(self.indices)
        for k in range(n):
            j = self.indices[(idx + k) % n]
            img = images.load(j)
            if img is not None:
                tf = images.transform
                return (tf(img) if tf is not None else img), images.samples[j][1]
        raise images.none_readable(self.indices, self.split)

    def __getitems__(self, indices: list[int]) -> list:
        return [self[i] for i in indices]

    def probe(self) -> None:
        """Decode images until one does (normally the first): a split with none is a
        :class:`DataError` now rather than in a DataLoader worker."""
        if len(self.indices):
            self[0]


def _check_all(folders: list[_Images]) -> None:
    """Decode every image once (``mode="error"``: the first bad one raises), as one task of
    the current progress reporter."""
    items = [(f, i) for f in folders for i in range(len(f))]
    for f, i in track(items, "checking images"):
        f.load(i)


def load_imagefolder(
    path: str | Path,
    input_size: tuple[int, int, int],
    seed: int = 0,
    model: str | None = None,
    train_augment: dict | None = None,
    *,
    bad_images: str = "skip",
) -> DataSplits:
    """Splits of a local class-folder tree (see the module docstring); ``model`` is the
    supernet name whose data config (mean, std, crop) the transforms use; ``bad_images``:
    ``skip`` (default) or ``error`` on images that do not decode."""
    if bad_images not in BAD_IMAGE_MODES:
        raise DataError(f"bad_images {bad_images!r}; allowed: {', '.join(BAD_IMAGE_MODES)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder:{path}: directory does not exist; expected {_FOLDER_LAYOUT}")
    train_tf, eval_tf = image_transforms(tuple(input_size), model, train_augment)
    bad_log = BadImageLog()

    def folder(p: Path) -> _Images:
        return _Images(p, bad_log, bad_images)

    if (root / "train").is_dir():
        base = folder(root / "train")
        if (root / "val").is_dir():
            vf = folder(root / "val")
            train = SkippingSplit(base, range(len(base)), train_tf, "train")
            val = SkippingSplit(vf, range(len(vf)), eval_tf, "val")
        else:
            tr, va = _split(len(base), (0.9, 0.1), seed)
            train = SkippingSplit(base, tr, train_tf, "train")
            val = SkippingSplit(base, va, eval_tf, "val")
        if (root / "test").is_dir():
            tf = folder(root / "test")
            test = SkippingSplit(tf, range(len(tf)), eval_tf, "test")
        else:
            test = val
    else:
        base = folder(root)
        tr, va, te = _split(len(base), (0.8, 0.1, 0.1), seed)
        train = SkippingSplit(base, tr, train_tf, "train")
        val = SkippingSplit(base, va, eval_tf, "val")
        test = SkippingSplit(base, te, eval_tf, "test")
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"imagefolder:{path}: too few images to split; expected {_FOLDER_LAYOUT}")
    splits = [train, val] + ([test] if test is not val else [])
    if bad_images == "error":
        folders = list({id(s.dataset.samples): s.dataset for s in splits}.values())
        _check_all(folders)  # type: ignore[arg-type]
    else:
        bad_log.quiet = True  # an all-bad folder is one error, not a warning per image first
        for s in splits:
            s.probe()
        bad_log.quiet = False
        bad_log.flush_warnings()
    return DataSplits(
        name=f"imagefolder:{path}",
        train=train,
        val=val,
        test=test,
        num_classes=len(base.classes),
        input_size=tuple(input_size),
        flip_ok=True,
        classes=list(base.classes),
        image_log=bad_log,
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
