from __future__ import annotations

import torch
from torch import nn

from dsnet_automl.slicing import (
    SlicedAttention,
    SlicedBatchNorm2d,
    SlicedConv2d,
    SlicedLayerNorm,
    SlicedLinear,
    SlicedMlp,
    qkv_head_major_to_timm,
    qkv_timm_to_head_major,
)

torch.manual_seed(0)


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_conv_slice_equals_export_and_is_a_view():
    conv = SlicedConv2d(16, 32, 3, 2, bias=True)
    x = torch.randn(2, 12, 9, 9)
    y = conv(x, 20)
    assert y.shape == (2, 20, 5, 5)
    assert close(y, conv.dense_copy(12, 20)(x))
    w = conv.weight[:20, :12]
    assert w.data_ptr() == conv.weight.data_ptr()  # a prefix view, no copy
    assert conv.macs(12, 20, 9, 9) == 20 * 12 * 9 * 25


def test_depthwise_conv_uses_groups_equal_active_width():
    dw = SlicedConv2d(16, 16, 3, 1, depthwise=True)
    x = torch.randn(2, 10, 6, 6)
    exp = dw.dense_copy(10, 10)
    assert exp.groups == 10 and exp.weight.shape == (10, 1, 3, 3)
    assert close(dw(x), exp(x))


def test_linear_slice():
    lin = SlicedLinear(32, 24)
    x = torch.randn(3, 5, 20)
    assert close(lin(x, 7), lin.dense_copy(20, 7)(x))


def test_batchnorm_private_stats_per_width():
    bn = SlicedBatchNorm2d(16, stat_keys=[8, 16])
    bn.train()
    x8 = torch.randn(4, 8, 5, 5) * 3 + 2
    bn(x8)
    assert not torch.allclose(bn.running_mean[0, :8], torch.zeros(8))
    assert torch.equal(bn.running_mean[1], torch.zeros(16))  # width 16 untouched
    assert int(bn.num_batches_tracked[0]) == 1 and int(bn.num_batches_tracked[1]) == 0
    ref = nn.BatchNorm2d(8)
    ref.train()(x8)
    assert close(bn.running_mean[0, :8], ref.running_mean)
    assert close(bn.running_var[0, :8], ref.running_var)
    bn.eval()
    assert close(bn(x8), bn.dense_copy(8).eval()(x8))


def test_batchnorm_keyed_by_other_width():
    bn = SlicedBatchNorm2d(16, stat_keys=[4, 8])
    bn.running_mean[1].fill_(1.0)
    bn.eval()
    x = torch.randn(2, 16, 3, 3)
    assert close(bn(x, key=8), bn.dense_copy(16, key=8).eval()(x))
    assert not close(bn(x, key=8), bn(x, key=4))


def test_layernorm_over_active_prefix():
    ln = SlicedLayerNorm(32)
    nn.init.normal_(ln.weight)
    x = torch.randn(2, 7, 20)
    assert close(ln(x), ln.dense_copy(20)(x))


def test_attention_heads_slice_matches_timm_export():
    attn = SlicedAttention(48, 6, head_dim=8)
    x = torch.randn(2, 11, 40)
    for heads in (1, 3, 6):
        static = attn.dense_copy(40, heads).eval()
        assert close(attn(x, heads), static(x))


def test_qkv_layout_round_trip():
    w = torch.randn(4 * 3 * 5, 7)
    assert torch.equal(qkv_timm_to_head_major(qkv_head_major_to_timm(w, 4, 5), 4, 5), w)


def test_mlp_hidden_slice_matches_timm_export():
    mlp = SlicedMlp(32, 128)
    x = torch.randn(2, 5, 24)
    assert close(mlp(x, 50), mlp.dense_copy(24, 50)(x))
