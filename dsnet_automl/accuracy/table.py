"""A persistent table of measured sub-net accuracies (SQLAlchemy 2: SQLite or PostgreSQL).

Every measured top-1 is stored under ``(checkpoint_hash, data, data_seed, split, config_key)``
so that no sub-net of one checkpoint is evaluated twice on the same split, across trials,
processes and re-runs. ``checkpoint_hash`` is the file content's sha256 (a re-trained
checkpoint at the same path gets new rows); ``data_seed`` is part of the key because it fixes
the train/val/test split of every in-memory dataset.

Evaluation is plain: the supernet in eval mode with its own per-width BN statistics (no
recalibration, the statistics the dynamic net's routes run on too), ``net(x, cfg)`` under
``torch.inference_mode`` in big batches over a split loaded once per process. Every config is
committed as soon as it is measured, so an interrupted run keeps what it measured.

Concurrent writers (Ray workers) are safe: WAL mode and a busy timeout on SQLite, and on every
database a row another process inserted first is kept (the ``INSERT`` conflict is caught and the
stored value is returned). Creating the tables is retried when several processes open an empty
PostgreSQL database at once. Messages never show a URL's password.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from torch import nn

from .._db import LazyEngineStore, retry_transient, sqlite_file
from .._faults import failpoint
from ..config import SubnetConfig
from ..errors import StudyError
from ..progress import track
from .measure import checkpoint_hash, clear_split_cache, split_tensors, subnet_top1
from .models import SCHEMA_VERSION, AccuracyRow, AccuracySchemaVersion, Base, config_key

__all__ = [
    "SCHEMA_VERSION",
    "AccuracyRow",
    "AccuracyTable",
    "checkpoint_hash",
    "clear_split_cache",
    "config_key",
]

_IN_CLAUSE = 400  # keys per SELECT ... IN (...), below SQLite's bound-parameter limit


class AccuracyTable(LazyEngineStore):
    """Measured sub-net accuracies in one database.

    Args:
        url: SQLAlchemy URL (``sqlite:///runs/accuracy.db``; ``sqlite://`` is in-memory;
            ``postgresql+psycopg://user:password@host:5432/dbname``).
        timeout_s: how long a writer waits for SQLite's lock.

    The object pickles without its engine (re-created on first use), so Ray can ship it.
    ``last_evaluated`` is the number of sub-nets the latest :meth:`evaluate` actually ran.
    """

    label, error, example_url = "accuracy table", StudyError, "sqlite:///runs/accuracy.db"
    error_todo = "if the file is corrupt, move it away (rows are re-measured on demand)"

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        super().__init__(url, timeout_s=timeout_s)
        self.last_evaluated = 0

    def _open(self) -> Engine:
        path = sqlite_file(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = self._new_engine()
        try:
            retry_transient(lambda: self._create(engine))
        except (SQLAlchemyError, StudyError) as e:
            engine.dispose()
            if isinstance(e, StudyError):
                raise
            raise self._error(e) from e
        return engine

    def _create(self, engine: Engine) -> None:
        """Create the tables and the version row (one transaction); raise on another version."""
        with Session(engine) as s, s.begin():
            Base.metadata.create_all(s.connection())
            row = s.get(AccuracySchemaVersion, 1)
            if row is None:
                s.add(AccuracySchemaVersion(id=1, version=SCHEMA_VERSION))
            elif row.version != SCHEMA_VERSION:
                newer = row.version > SCHEMA_VERSION
                raise StudyError(
                    f"accuracy table {self.shown_url} has schema version {row.version}, "
                    f"{'newer than' if newer else 'not'} the version this dsnet-automl reads "
                    f"({SCHEMA_VERSION}); it was left untouched: "
                    + ("upgrade dsnet-automl, or " if newer else "")
                    + "pass another accuracy database (its rows can be re-measured)"
                )

    # ------------------------------------------------------------------ queries
    @staticmethod
    def _where(ckpt_hash: str, data: str, split: str, seed: int) -> tuple[Any, ...]:
        return (
            AccuracyRow.checkpoint_hash == ckpt_hash,
            AccuracyRow.data == data,
            AccuracyRow.data_seed == int(seed),
            AccuracyRow.split == split,
        )

    def lookup(
        self,
        ckpt_hash: str,
        data: str,
        split: str,
        configs: Iterable[SubnetConfig],
        *,
        seed: int = 0,
    ) -> dict[SubnetConfig, float]:
        """Stored top-1 of those ``configs`` that have a row (the others are absent)."""
        by_key = {config_key(c): c for c in configs}
        keys = list(by_key)
        out: dict[SubnetConfig, float] = {}
        with self.session() as s:
            for i in range(0, len(keys), _IN_CLAUSE):
                q = select(AccuracyRow.config_key, AccuracyRow.top1).where(
                    *self._where(ckpt_hash, data, split, seed),
                    AccuracyRow.config_key.in_(keys[i : i + _IN_CLAUSE]),
                )
                out.update((by_key[k], top1) for k, top1 in s.execute(q))
        return out

    def _put(self, row: AccuracyRow) -> float:
        """Insert one row (own transaction); if another writer stored it first, keep theirs
        and return its top-1."""
        try:
            with self.session() as s:
                s.add(row)
                s.flush()
                failpoint("acctable:insert")  # the row inserted, not committed yet
            return row.top1
        except StudyError as e:
            if not isinstance(e.__cause__, IntegrityError):
                raise
        with self.session() as s:
            q = select(AccuracyRow.top1).where(
                *self._where(row.checkpoint_hash, row.data, row.split, row.data_seed),
                AccuracyRow.config_key == row.config_key,
            )
            return float(s.scalar(q))

    def evaluate(
        self,
        net: nn.Module,
        configs: Sequence[SubnetConfig],
        *,
        ckpt_hash: str,
        data: str,
        split: str = "val",
        seed: int = 0,
        batch_size: int = 512,
        device: str | torch.device = "cpu",
        progress: bool = False,
    ) -> dict[SubnetConfig, float]:
        """Top-1 of every config; only the configs without a row are run (and stored).

        Args:
            net: the :class:`~dsnet_automl.supernets.Supernet` ``ckpt_hash`` was taken from
                (``net(x, cfg)``, ``net.space``), any mode: it is put in eval mode for the
                measurement and restored after.
            configs: sub-nets of ``net.space``.
            ckpt_hash: :func:`checkpoint_hash` of the checkpoint ``net`` was loaded from.
            data: dataset spec (``dsnet_automl.data.load_dataset``).
            split: ``train``, ``val`` or ``test``.
            seed: data seed (fixes the split).
            batch_size: evaluation batch size.
            device: where the forward passes run.
            progress: report progress (a task of :func:`dsnet_automl.progress.reporter`).

        Returns:
            ``{config: top1}`` for every config given, in their order.
        """
        configs = list(dict.fromkeys(configs))
        have = self.lookup(ckpt_hash, data, split, configs, seed=seed)
        todo = [c for c in configs if c not in have]
        self.last_evaluated = 0
        if todo:
            for c in todo:
                net.space.validate(c)
            dev = torch.device(device)
            x, y = split_tensors(data, tuple(net.space.input_size), seed, split, net.space.supernet)
            if dev.type != "cpu":
                x, y = x.to(dev), y.to(dev)
            was_training = net.training
            net.eval()
            # depthwise-conv nets: 0.17 vs 0.27 s per tiny DS-MobileNetV1 sub-net on val
            channels_last = getattr(net, "prefers_channels_last", False) and x.ndim == 4
            if channels_last:
                net.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            try:
                for cfg in track(todo, "measuring sub-nets", enabled=progress):
                    t0 = time.perf_counter()
                    top1 = subnet_top1(net, x, y, cfg, batch_size, dev)
                    row = AccuracyRow(
                        checkpoint_hash=ckpt_hash,
                        data=data,
                        data_seed=int(seed),
                        split=split,
                        supernet=cfg.supernet,
                        config_key=config_key(cfg),
                        top1=top1,
                        n_samples=len(y),
                        seconds=time.perf_counter() - t0,
                        device=str(dev),
                    )
                    have[cfg] = self._put(row)
                    self.last_evaluated += 1
            finally:
                net.train(was_training)
                if channels_last:
                    net.to(memory_format=torch.contiguous_format)
        return {c: have[c] for c in configs}

    def to_frame(
        self,
        ckpt_hash: str | None = None,
        data: str | None = None,
        split: str | None = None,
        *,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Stored rows (filtered by whichever of the arguments are given), one per sub-net:
        ``checkpoint_hash, data, data_seed, split, supernet, config, top1, n_samples, seconds,
        device, created`` and one column per slice dim."""
        q = select(AccuracyRow).order_by(AccuracyRow.id)
        for col, val in (
            (AccuracyRow.checkpoint_hash, ckpt_hash),
            (AccuracyRow.data, data),
            (AccuracyRow.split, split),
            (AccuracyRow.data_seed, seed),
        ):
            if val is not None:
                q = q.where(col == val)
        cols = [
            "checkpoint_hash",
            "data",
            "data_seed",
            "split",
            "supernet",
            "config",
            "top1",
            "n_samples",
            "seconds",
            "device",
            "created",
        ]
        rows = []
        with self.session() as s:
            for r in s.scalars(q):
                cfg = SubnetConfig.from_json(r.config_key)
                rows.append(
                    {
                        **{c: getattr(r, c) for c in cols if c != "config"},
                        "config": r.config_key,
                        **cfg.as_dict(),
                    }
                )
        return pd.DataFrame(rows, columns=None if rows else cols)
