"""Stage I: sandwich step, targets, EMA, losses, calibration, evaluation, resume, checkpoints."""

from __future__ import annotations

import os
import random
import signal

import pytest
import torch

from dsnet_automl import create_supernet, load_space
from dsnet_automl.config import SliceSpace
from dsnet_automl.data import load_dataset, make_loaders
from dsnet_automl.errors import CheckpointError, SearchSpaceError, TrainingInterrupted
from dsnet_automl.slicing import SlicedBatchNorm2d
from dsnet_automl.training import (
    EmaTeacher,
    SandwichStep,
    TrainConfig,
    build_optimizer,
    calibrate_bn,
    evaluate_configs,
    load_checkpoint,
    load_supernet,
    mvco_targets,
    resolve_configs,
    soft_ce,
    train_supernet,
)
from dsnet_automl.training import sandwich as sandwich_mod
from dsnet_automl.training.supernet import named_configs

TINY = "ds_mobilenet_v1_tiny"


def _spy(net):
    calls = []
    orig = net.forward

    def forward(x, cfg=None):
        calls.append((cfg, x.shape[0]))
        return orig(x, cfg)

    net.forward = forward
    return calls


def _setup(distill="ib", mvco=False, single=None, num_random=2, space=TINY):
    torch.manual_seed(0)
    net = create_supernet(space)
    cfg = TrainConfig(space=space, distill=distill, num_random=num_random, mvco=mvco)
    teacher = EmaTeacher(net) if distill == "ib" else None
    step = SandwichStep(net, net.space, cfg, teacher=teacher, mvco=mvco, single=single)
    opt, sched = build_optimizer(net, cfg, 10)
    return net, teacher, step, opt, sched


def _batch(b=6, size=(3, 32, 32)):
    g = torch.Generator().manual_seed(1)
    return torch.randn((b, *size), generator=g), torch.randint(0, 10, (b,), generator=g)


def test_sandwich_runs_expected_configs_and_one_optimizer_step(monkeypatch):
    net, teacher, step, opt, _ = _setup()
    calls = _spy(net)
    tcalls = _spy(teacher.module)
    n_steps = []
    orig_step = opt.step
    monkeypatch.setattr(opt, "step", lambda *a, **k: (n_steps.append(1), orig_step(*a, **k)))
    ce, sce = [], []
    monkeypatch.setattr(
        sandwich_mod,
        "label_smoothed_ce",
        lambda *a, **k: ce.append(1) or torch.nn.functional.cross_entropy(a[0], a[1]),
    )
    monkeypatch.setattr(sandwich_mod, "soft_ce", lambda *a, **k: sce.append(1) or soft_ce(*a, **k))
    before = [p.detach().clone() for p in net.parameters()]
    x, y = _batch()
    step(x, y, rng=random.Random(7), gen=torch.Generator().manual_seed(0), optimizer=opt)
    sp = net.space
    r = random.Random(7)
    expected = [sp.largest(), sp.smallest(), sp.sample(r), sp.sample(r)]
    assert [c for c, _ in calls] == expected
    assert [c for c, _ in tcalls] == [sp.largest()]  # teacher once, at the largest config
    assert n_steps == [1]
    assert ce == [1] and sce == [1, 1, 1]  # largest on labels, the others on the teacher
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert int(teacher.num_updates) == 1


def test_sandwich_gradients_are_the_sum_over_subnets():
    net, _, step, opt, _ = _setup(distill="none", num_random=1)
    step.cfg = step.cfg.model_copy(update={"augment": False, "label_smoothing": 0.0})
    x, y = _batch()
    sp = net.space
    r = random.Random(3)
    configs = [sp.largest(), sp.smallest(), sp.sample(r)]
    net.train()
    ref = create_supernet(TINY)
    ref.load_state_dict(net.state_dict())
    ref.train()
    loss = sum(torch.nn.functional.cross_entropy(ref(x, c), y) for c in configs)
    loss.backward()
    opt.step = lambda *a, **k: None  # keep the grads to compare
    step(x, y, rng=random.Random(3), gen=torch.Generator(), optimizer=opt)
    for (n, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        g1 = torch.zeros_like(p) if p.grad is None else p.grad
        g2 = torch.zeros_like(q) if q.grad is None else q.grad
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize(("distill", "n_ce", "n_soft"), [("inplace", 1, 3), ("none", 4, 0)])
def test_distill_modes(monkeypatch, distill, n_ce, n_soft):
    net, _, step, opt, _ = _setup(distill=distill)
    ce, sce = [], []
    monkeypatch.setattr(
        sandwich_mod,
        "label_smoothed_ce",
        lambda *a, **k: ce.append(1) or torch.nn.functional.cross_entropy(a[0], a[1]),
    )
    monkeypatch.setattr(sandwich_mod, "soft_ce", lambda *a, **k: sce.append(1) or soft_ce(*a, **k))
    x, y = _batch()
    step(x, y, rng=random.Random(0), gen=torch.Generator(), optimizer=opt)
    assert (len(ce), len(sce)) == (n_ce, n_soft)


def test_single_config_mode_and_mvco_doubles_the_batch():
    net0 = create_supernet(TINY)
    mid = net0.space.at_fraction(0.5)
    net, _, step, opt, _ = _setup(distill="ib", single=mid)
    calls = _spy(net)
    x, y = _batch(b=4)
    step(x, y, rng=random.Random(0), gen=torch.Generator(), optimizer=opt)
    assert calls == [(mid, 4)]

    net, teacher, step, opt, _ = _setup(distill="ib", mvco=True, num_random=0)
    calls = _spy(net)
    step(x, y, rng=random.Random(0), gen=torch.Generator(), optimizer=opt)
    assert [b for _, b in calls] == [8, 8]


def test_mvco_targets_and_soft_ce():
    logits = torch.randn(6, 5)  # 2 views x 3 samples
    t = mvco_targets(logits, 2)
    p = logits.softmax(-1)
    mean = (p[:3] + p[3:]) / 2
    torch.testing.assert_close(t, torch.cat([mean, mean]))
    # soft CE against one-hot == CE; soft CE is linear in the target
    s = torch.randn(3, 5)
    y = torch.tensor([0, 3, 1])
    onehot = torch.nn.functional.one_hot(y, 5).float()
    torch.testing.assert_close(soft_ce(s, onehot), torch.nn.functional.cross_entropy(s, y))
    torch.testing.assert_close(soft_ce(s, mean), 0.5 * soft_ce(s, p[:3]) + 0.5 * soft_ce(s, p[3:]))


def test_ema_update_matches_hand_computation():
    torch.manual_seed(0)
    net = create_supernet(TINY)
    ema = EmaTeacher(net, decay=0.9, warmup=False)
    e0 = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, SlicedBatchNorm2d):
                m.running_mean.add_(1.0)
                m.num_batches_tracked.add_(5)
    ema.update(net)
    src = net.state_dict()
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.9 * e0[k] + 0.1 * src[k])
        else:
            assert torch.equal(v, src[k])
    # warm-up: update n uses min(decay, (1 + n) / (10 + n))
    w = EmaTeacher(net, decay=0.997, warmup=True)
    assert w.current_decay() == pytest.approx(0.1)
    w.num_updates.fill_(990)
    assert w.current_decay() == pytest.approx(0.991)
    w.num_updates.fill_(100_000)
    assert w.current_decay() == 0.997
    assert not w.train().training


def test_calibrate_bn_is_the_cumulative_mean_of_batch_statistics():
    torch.manual_seed(0)
    net = create_supernet(TINY)
    sp = net.space
    small = sp.smallest()
    xs = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    bn = net.units[0].bn
    w = small["stem.width"]
    r_small, r_big = bn.row(w), bn.row(sp.largest()["stem.width"])
    bn.running_mean[r_big].fill_(7.0)  # a row no listed config touches keeps its value
    net.eval()  # the mode is restored afterwards
    n_rows = calibrate_bn(net, xs, [small], num_batches=3)
    assert n_rows > 0
    with torch.no_grad():
        feats = [net.units[0].conv(x, w) for x in xs]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean[r_small, :w], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var[r_small, :w], var, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked[r_small]) == 3
    assert torch.all(bn.running_mean[r_big] == 7.0)
    assert bn.momentum == 0.1 and not net.training
    assert calibrate_bn(create_supernet("ds_deit_small_tiny"), xs, [None]) == 0


def test_evaluate_configs_and_resolve():
    net = create_supernet(TINY).eval()
    sp = net.space
    data = load_dataset("synthetic:32", sp.input_size)
    _, _, test = make_loaders(data, 16)
    cfgs = resolve_configs(sp, "smallest,middle,largest,random:2", seed=0)
    assert cfgs[:3] == [sp.smallest(), sp.at_fraction(0.5), sp.largest()] and len(cfgs) == 5
    df = evaluate_configs(net, test, cfgs[:2])
    assert list(df["macs"]) == [net.macs(c) for c in cfgs[:2]]
    assert df["top1"].between(0, 1).all()
    with pytest.raises(SearchSpaceError, match="'all' would evaluate 2,160"):
        resolve_configs(sp, "all")
    with pytest.raises(SearchSpaceError, match="not understood"):
        resolve_configs(sp, "biggest")


def _cfg(**kw):
    base = dict(
        space=TINY,
        data="synthetic:48",
        epochs=2,
        batch_size=16,
        lr=0.05,
        progress=False,
        eval_every=1,
        num_random=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _state(path):
    ck = load_checkpoint(path)
    return ck


def _assert_same(a, b):
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for k in sa:
        assert torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]


def test_resume_mid_epoch_and_after_signal_equals_uninterrupted(tmp_path):
    full = train_supernet(_cfg(), tmp_path / "full")
    assert not full.interrupted and len(full.history) == 2
    # stopped in the middle of epoch 1 (3 steps per epoch), then resumed
    part = train_supernet(_cfg(), tmp_path / "mid", max_steps=2)
    assert part.interrupted and _state(part.checkpoint)["step_in_epoch"] == 2
    train_supernet(_cfg(), tmp_path / "mid", resume=True)
    _assert_same(_state(full.checkpoint), _state(tmp_path / "mid" / "checkpoint.pt"))

    # SIGTERM after epoch 1: checkpoint written, TrainingInterrupted raised, resume continues
    def report(metrics):
        if metrics["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="--resume"):
        train_supernet(_cfg(), tmp_path / "sig", report=report)
    assert _state(tmp_path / "sig" / "checkpoint.pt")["epoch"] == 1
    res = train_supernet(_cfg(), tmp_path / "sig", resume=True)
    _assert_same(_state(full.checkpoint), _state(res.checkpoint))
    assert [h["val_top1_largest"] for h in res.history] == [
        h["val_top1_largest"] for h in full.history
    ]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint .* to resume"):
        train_supernet(_cfg(), tmp_path / "none", resume=True)
    res = train_supernet(_cfg(epochs=1), tmp_path / "a")
    with pytest.raises(CheckpointError, match="already holds a checkpoint; pass --resume"):
        train_supernet(_cfg(epochs=1), tmp_path / "a")
    with pytest.raises(CheckpointError, match=r"different config \(lr: checkpoint 0.05 vs now 0.1"):
        train_supernet(_cfg(epochs=1, lr=0.1), tmp_path / "a", resume=True)
    other = create_supernet("ds_deit_small_tiny").space
    with pytest.raises(CheckpointError, match="is for supernet 'ds_mobilenet_v1_tiny'"):
        load_checkpoint(res.checkpoint, space=other)
    net = load_supernet(res.checkpoint, which="ema")
    assert net.name == TINY and not net.training
    # truncated file
    data = res.checkpoint.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or not a torch file"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_supernet(bad)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a dsnet_automl Stage I checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    # a corrupt checkpoint in a run directory is an error on --resume, never a restart
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_supernet(_cfg(epochs=1), tmp_path / "a", resume=True)


def test_vit_supernet_trains_with_mvco_by_default(tmp_path):
    res = train_supernet(
        _cfg(space="ds_deit_small_tiny", epochs=1, optimizer="adamw", lr=1e-3), tmp_path / "vit"
    )
    assert load_checkpoint(res.checkpoint)["config"]["mvco"] is None and res.mvco
    assert res.test is not None and len(res.test) == 3


def test_mvco_default_is_a_trait_of_the_supernet_incl_slicified_vits():
    import timm

    from dsnet_automl import slicify

    vit = timm.create_model("vit_small_patch16_224", img_size=64, global_pool="avg")
    sliced = slicify(vit, verify=False)
    assert sliced.default_mvco  # was silently off for slicified ViTs
    assert sliced.default_recipe["optimizer"] == "adamw"  # and trained with a CNN's SGD
    assert create_supernet("ds_deit_small_tiny").default_mvco
    assert not create_supernet("ds_resnet50_tiny").default_mvco
    assert not slicify(timm.create_model("resnet18"), verify=False).default_mvco


def test_stage1_report_labels_each_config_with_all_its_names():
    space = SliceSpace("ds_mobilenet_v1_tiny", (("stage1.width", (16, 24)),), (3, 32, 32))
    named = named_configs(space)
    assert list(named.values()) in (["smallest", "middle/largest"], ["smallest/middle", "largest"])
    assert named[space.largest()].endswith("largest")
    assert list(named_configs(load_space("ds_mobilenet_v1_tiny")).values()) == [
        "smallest",
        "middle",
        "largest",
    ]


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    out = tmp_path / "ext"
    first = train_supernet(_cfg(epochs=1), out)
    assert [h["epoch"] for h in first.history] == [1]
    with pytest.raises(CheckpointError, match="only --epochs may grow"):
        train_supernet(_cfg(epochs=2, lr=0.5), out, resume=True)
    more = train_supernet(_cfg(epochs=2), out, resume=True)
    assert [h["epoch"] for h in more.history] == [1, 2]
    ckpt = load_checkpoint(more.checkpoint)
    assert ckpt["config"]["epochs"] == 2 and ckpt["epoch"] == 2
    with pytest.raises(CheckpointError, match="already trained 2 of 2 epochs; give --epochs >= 2"):
        train_supernet(_cfg(epochs=1), out, resume=True)


@pytest.mark.fault(
    fault="Stage I training stopped mid-epoch (Ctrl-C, SIGTERM, a preempted job)",
    injected="SIGTERM at the second training step",
    sees="one line: checkpoint written, resume with --resume",
    kept="a checkpoint at that step; the resumed run equals the uninterrupted one",
)
def test_signal_mid_epoch_resumes_with_the_same_epoch_metrics(tmp_path, monkeypatch):
    """SIGTERM inside an epoch: checkpoint at that step (with the epoch's running sums),
    TrainingInterrupted, and the resumed run's weights and epoch losses equal the
    uninterrupted run's (the same loop as the gate's, see training/loop.py)."""
    from dsnet_automl.training import supernet as sn

    full = train_supernet(_cfg(), tmp_path / "full")
    calls = {"n": 0}
    real = sn._train_step

    def step_then_signal(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(sn, "_train_step", step_then_signal)
    with pytest.raises(TrainingInterrupted, match="epoch 1, step 2"):
        train_supernet(_cfg(), tmp_path / "sig")
    ck = _state(tmp_path / "sig" / "checkpoint.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == (0, 2) and ck["epoch_sums"]["steps"] == 2
    monkeypatch.setattr(sn, "_train_step", real)
    res = train_supernet(_cfg(), tmp_path / "sig", resume=True)
    _assert_same(_state(full.checkpoint), _state(res.checkpoint))
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full.history]


def test_ensemble_ib_targets_the_smallest_with_the_teachers_mean(monkeypatch):
    """ib_ensemble: the smallest sub-net's soft target = mean of the teacher's probabilities
    at the largest and at the step's random configs; the random ones keep the largest's."""
    torch.manual_seed(0)
    net = create_supernet(TINY)
    cfg = TrainConfig(space=TINY, distill="ib", num_random=2, ib_ensemble=True, augment=False)
    teacher = EmaTeacher(net)
    step = SandwichStep(net, net.space, cfg, teacher=teacher)
    opt, _ = build_optimizer(net, cfg, 10)
    x, y = _batch()
    configs = step.configs(random.Random(5))  # the step draws the same ones from seed 5
    with torch.no_grad():
        probs = [teacher(x, c).float().softmax(-1) for c in [configs[0], *configs[2:]]]
    targets = []

    def spy(out, soft):
        targets.append(soft.clone())
        return soft_ce(out, soft)

    monkeypatch.setattr(sandwich_mod, "soft_ce", spy)
    step(x, y, rng=random.Random(5), gen=torch.Generator(), optimizer=opt)
    assert len(targets) == 3  # smallest + 2 random
    torch.testing.assert_close(targets[0], torch.stack(probs).mean(0))
    for t in targets[1:]:
        torch.testing.assert_close(t, probs[0])


@pytest.mark.parametrize(
    ("space", "kind", "lr", "wd"),
    [("ds_mobilenet_v1_tiny", torch.optim.SGD, 0.1, 5e-5),
     ("ds_deit_small_tiny", torch.optim.AdamW, 1e-3, 0.05)],
)  # fmt: skip
def test_unset_optimizer_fields_come_from_the_supernet_family(space, kind, lr, wd):
    net = create_supernet(space)
    opt, _ = build_optimizer(net, TrainConfig(space=space), 10)
    assert isinstance(opt, kind)
    assert opt.param_groups[0]["initial_lr"] == lr and opt.param_groups[0]["weight_decay"] == wd
    # explicit values win, field by field
    opt, _ = build_optimizer(net, TrainConfig(space=space, optimizer="sgd", lr=0.05), 10)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["initial_lr"] == 0.05
    assert opt.param_groups[0]["weight_decay"] == wd
    assert TrainConfig(space=space).optimizer is None  # the run's config stays as given


def test_channels_last_changes_only_rounding(tmp_path):
    """DS-MobileNetV1 trains channels_last on CPU by default (faster depthwise convs); the
    weights after a few steps equal an NCHW run's up to float rounding."""
    assert create_supernet(TINY).prefers_channels_last
    assert not create_supernet("ds_resnet50_tiny").prefers_channels_last
    runs = {}
    for cl in (None, False):
        train_supernet(_cfg(channels_last=cl, epochs=1), tmp_path / str(cl), max_steps=2)
        runs[cl] = _state(tmp_path / str(cl) / "checkpoint.pt")["model"]
    a, b = runs[None], runs[False]
    assert any(not torch.equal(a[k], b[k]) for k in a), "another memory format, other rounding"
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
