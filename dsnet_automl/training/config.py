"""Stage I training configuration (pydantic): everything a run depends on, saved in every
checkpoint so ``--resume`` can refuse a changed run instead of silently mixing two."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..defaults import DEFAULT_DATA, DEFAULT_SPACE

__all__ = ["RECIPE_FIELDS", "RUNTIME_FIELDS", "TrainConfig", "with_recipe"]

# fields a supernet family's recipe fills when a run leaves them unset (None)
RECIPE_FIELDS = ("optimizer", "lr", "weight_decay")

# fields that may differ between a run and its resumption (they do not change the result on CPU;
# ``threads`` and ``channels_last`` change only float rounding, so a resume may change them)
RUNTIME_FIELDS = frozenset(
    {"bad_images", "channels_last", "device", "num_workers", "progress", "threads"}
)


class TrainConfig(BaseModel):
    """Stage I (supernet) training run.

    Defaults are the demo recipe: ``ds_mobilenet_v1_tiny`` on ``digits-hard`` in a few minutes
    on 2 CPU cores. ImageNet-scale users raise ``epochs``/``batch_size`` and pick ``lr``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str = Field(DEFAULT_SPACE, description="supernet name or slice-space YAML")
    data: str = Field(DEFAULT_DATA, description="dataset spec, see dsnet_automl.data")
    init: str | None = Field(
        None,
        description="local pretrained weights (state dict / timm checkpoint) the supernet "
        "starts from; for timm:<arch> loaded into the timm model before slicify",
    )
    img_size: int | None = Field(
        None, ge=8, description="train and evaluate at this image size instead of the space's"
    )
    train_limit: int | None = Field(None, ge=1, description="use only the first N train samples")
    epochs: int = Field(
        7, ge=0, description="0: only initialise (e.g. from --init), checkpoint and evaluate"
    )
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adamw"] | None = Field(
        None,
        description="None: the supernet family's recipe (CNNs: sgd, lr 0.1, weight decay 5e-5; "
        "vision transformers: adamw, lr 1e-3, weight decay 0.05), see Supernet.default_recipe",
    )
    lr: float | None = Field(
        None, gt=0, description="peak learning rate (after warm-up); None: the recipe's"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0, description="None: the recipe's")
    warmup_epochs: float = Field(1.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor, fraction of lr")
    label_smoothing: float = Field(0.1, ge=0, lt=1)

    num_random: int = Field(2, ge=0, description="random sub-nets per step (sandwich rule)")
    distill: Literal["ib", "inplace", "none"] = Field(
        "ib",
        description="ib: EMA teacher at the largest config; inplace: the current largest "
        "sub-net's detached output; none: every sub-net learns from labels",
    )
    ema_decay: float = Field(0.997, ge=0, lt=1)
    ema_warmup: bool = Field(
        True, description="use min(ema_decay, (1+n)/(10+n)) at update n (short runs)"
    )
    ema_bn: Literal["running", "batch"] = Field(
        "batch",
        description="EMA teacher's BatchNorm: batch = the batch's own statistics, running ones "
        "left untouched (default: more accurate sub-nets than 'running' in the Stage I "
        "ablation, measured: docs/results/stage1.md); running = its averaged running statistics",
    )
    ib_ensemble: bool = Field(
        False,
        description="ensemble IB: the smallest sub-net's target is the mean of the EMA teacher's "
        "outputs at the largest and at this step's random configs (costs num_random extra "
        "teacher forwards per step)",
    )
    mvco: bool | None = Field(None, description="multi-view consistency; None = on for ViTs")
    augment: bool = Field(True, description="random shift + noise on training batches")
    auto_augment: str | None = Field(
        None,
        description="image folders: timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1 or "
        "augmix-m5-w4-d2 (timm's --aa)",
    )
    color_jitter: float = Field(0.4, ge=0, description="image folders: timm's --color-jitter")
    reprob: float = Field(0.0, ge=0, le=1, description="image folders: random erasing prob.")
    single_config: float | dict[str, float] | None = Field(
        None,
        description="train ONE sub-net alone on labels: a fraction (0 smallest, 0.5 middle, "
        "1 largest) or a {dim: value} mapping; disables the sandwich rule",
    )

    seed: int = 0
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads during the run (None: the process's count). On CPU a "
        "run is bit-repeatable across processes at the same count only: another count sums "
        "in another order, and training amplifies that rounding like another seed",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(True, description="mixed precision + channels_last on CUDA")
    channels_last: bool | None = Field(
        None,
        description="train in channels_last memory format; None: with amp on CUDA, and on CPU "
        "where the supernet prefers it (Supernet.prefers_channels_last: DS-MobileNetV1, whose "
        "depthwise convs run faster in it; measured: docs/results/training.md). Changes float "
        "rounding only",
    )
    num_workers: int = Field(0, ge=0)
    bad_images: Literal["skip", "error"] = Field(
        "skip",
        description="image folders: skip an image that does not decode (warning, RUN/"
        "bad_images.txt) or check every image before training and stop at the first bad one",
    )
    progress: bool = True
    eval_every: int = Field(1, ge=0, description="val top-1 of smallest/largest every N epochs")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sgd" and self.momentum == 0 and (self.lr or 0) > 1:
            raise ValueError(f"lr={self.lr} is too large for plain SGD")
        return self


def with_recipe(cfg: TrainConfig, recipe: dict[str, object]) -> TrainConfig:
    """``cfg`` with the recipe fields it leaves unset (None) taken from ``recipe`` (a supernet's
    ``default_recipe``); explicit values always win."""
    missing = {k: recipe[k] for k in RECIPE_FIELDS if getattr(cfg, k) is None and k in recipe}
    return cfg.model_copy(update=missing) if missing else cfg
