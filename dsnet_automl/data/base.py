"""Dataset containers shared by every data source, and deterministic, resumable loaders.

Every source returns a :class:`DataSplits` (train/val/test ``Dataset`` s of ``(x, y)`` with
``x: (C, H, W)`` float, normalised, and ``y`` a class index). In-memory sources use
:class:`ArrayDataset`, which also carries an optional per-sample ``difficulty`` in ``[0, 1]``
(``digits-hard``) and can be indexed by a whole list of indices at once, so a batch is one
tensor gather instead of ``batch_size`` Python calls.

Loaders draw batches from :class:`EpochBatchSampler`: a permutation that depends only on
``(seed, epoch)`` and can start at any batch, which is what makes mid-epoch resume exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "ArrayDataset",
    "DataSplits",
    "EpochBatchSampler",
    "epoch_sampler",
    "make_loader",
    "make_loaders",
]


class ArrayDataset(Dataset):
    """In-memory images and labels.

    Args:
        x: (N, C, H, W) float images (already normalised).
        y: (N,) int64 labels.
        difficulty: optional (N,) float in [0, 1] (0 = clean, 1 = severe corruption).
    """

    batched = True  # ``ds[list_of_indices]`` returns a whole batch

    def __init__(self, x: Tensor, y: Tensor, difficulty: Tensor | None = None) -> None:
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"ArrayDataset: x (N,C,H,W) and y (N,), got {x.shape}, {y.shape}")
        if difficulty is not None and difficulty.shape != y.shape:
            raise ValueError("ArrayDataset: difficulty must have shape (N,)")
        self.x = x.contiguous()
        self.y = y.long()
        self.difficulty = difficulty

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: int | Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """An int gives ``((C,H,W), ())``; a list of B indices gives ``((B,C,H,W), (B,))``."""
        if not isinstance(idx, int):
            idx = torch.as_tensor(idx, dtype=torch.long)
        return self.x[idx], self.y[idx]

    def subset(self, n: int | None) -> ArrayDataset:
        """The first ``n`` samples (all if ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        d = None if self.difficulty is None else self.difficulty[:n]
        return ArrayDataset(self.x[:n], self.y[:n], d)


@dataclass
class DataSplits:
    """Train/val/test datasets of one source.

    Attributes:
        name: the dataset spec it came from.
        num_classes: number of classes.
        input_size: (C, H, W) of every sample.
        flip_ok: whether a horizontal flip keeps the label (natural images yes, digits no);
            the trainer's view augmentation reads it.
        image_log: image folders: the :class:`~dsnet_automl.data.folders.BadImageLog` of the
            images the splits skipped because they do not decode (None for other sources).
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_size: tuple[int, int, int]
    flip_ok: bool = False
    classes: list[str] = field(default_factory=list)
    image_log: Any = None

    @property
    def bad_images(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every image skipped so far (image folders; else empty)."""
        return [] if self.image_log is None else self.image_log.read()

    def bad_images_summary(self) -> str | None:
        """One line about the skipped images, or None (see ``BadImageLog.summary``)."""
        return None if self.image_log is None else self.image_log.summary()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices; the order depends only on ``(seed, epoch)``.

    Args:
        n: dataset length.
        batch_size: samples per batch.
        shuffle: permute (train) or keep order (eval).
        seed: base seed of the permutation.
        drop_last: drop a final short batch (train) so every step sees ``batch_size`` samples.
        shard: ``(rank, world)`` of a data-parallel run: ``batch_size`` is the global batch and
            rank ``r`` gets rows ``[r*B/W, (r+1)*B/W)`` of each (needs ``drop_last`` or
            ``n % batch_size == 0`` so every shard has the same size).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        rank, world = shard
        if batch_size % world or not 0 <= rank < world:
            raise ValueError(f"shard {shard} does not split batch_size={batch_size} evenly")
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.epoch, self.start = 0, 0
        per = batch_size // world
        self.rows = slice(rank * per, (rank + 1) * per) if world > 1 else slice(None)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches."""
        self.epoch, self.start = epoch, start_batch

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for b in range(self.start, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size][self.rows]


def make_loader(
    ds: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """A ``DataLoader`` driven by an :class:`EpochBatchSampler` (``loader.batch_sampler`` or,
    for batched in-memory datasets, ``loader.sampler``); call its ``set_epoch`` each epoch."""
    sampler = EpochBatchSampler(
        len(ds), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, shard=shard
    )
    kw = {"num_workers": num_workers, "pin_memory": pin_memory}
    if num_workers > 0:
        kw["persistent_workers"] = False
    if getattr(ds, "batched", False):
        # the dataset gathers a whole batch itself: no per-sample collate
        return DataLoader(ds, batch_size=None, sampler=sampler, **kw)
    return DataLoader(ds, batch_sampler=sampler, **kw)


def epoch_sampler(loader: DataLoader) -> EpochBatchSampler:
    """The :class:`EpochBatchSampler` behind a loader built by :func:`make_loader`."""
    s = loader.batch_sampler if isinstance(loader.batch_sampler, EpochBatchSampler) else None
    s = s or loader.sampler
    if not isinstance(s, EpochBatchSampler):
        raise TypeError("loader was not built by dsnet_automl.data.make_loader")
    return s


def split_tensors(ds: Dataset) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of a whole split as tensors: in-memory datasets as they are, lazily decoded
    ones (image folders) gathered once through a loader (an eval split must fit in memory)."""
    if isinstance(ds, ArrayDataset):
        return ds.x, ds.y
    xs, ys = zip(*make_loader(ds, 256, shuffle=False), strict=True)
    return torch.cat(xs), torch.cat(ys).long()


def make_loaders(
    splits: DataSplits,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    eval_batch_size: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (shuffled per epoch, full batches only), val and test (in order) loaders.

    ``shard = (rank, world)`` splits each global train batch between data-parallel ranks;
    val and test are never sharded (rank 0 evaluates)."""
    eb = eval_batch_size or max(batch_size, 256)
    kw = {"num_workers": num_workers, "pin_memory": pin_memory}
    n_train = len(splits.train)
    train = make_loader(
        splits.train,
        min(batch_size, n_train),
        shuffle=True,
        seed=seed,
        drop_last=n_train >= batch_size,
        shard=shard,
        **kw,
    )
    val = make_loader(splits.val, eb, shuffle=False, **kw)
    test = make_loader(splits.test, eb, shuffle=False, **kw)
    return train, val, test
