"""Grid signatures: the per-unit enumeration finds exactly what iterating every config finds."""

from __future__ import annotations

import pytest

from dsnet_automl import create_supernet
from dsnet_automl.latency import grid_signatures, signature_of


@pytest.mark.parametrize("name", ["ds_mobilenet_v1_tiny", "ds_deit_small_tiny", "ds_resnet50_tiny"])
def test_per_unit_enumeration_equals_exhaustive(name: str) -> None:
    net = create_supernet(name)
    fast = grid_signatures(net, exhaustive=False)
    full = grid_signatures(net, exhaustive=True)
    assert set(fast) == set(full) and len(full) > 10


def test_identical_blocks_share_one_signature() -> None:
    net = create_supernet("ds_mobilenet_v1_tiny")
    calls = net.block_calls(net.space.largest())
    groups: dict[tuple, list] = {}
    for c in calls:  # same kind, hparams, active sizes and input shape at different positions
        groups.setdefault((c.kind, c.hparams, c.active, c.in_shape), []).append(c)
    repeated = [g for g in groups.values() if len(g) >= 2]
    assert repeated, "the largest tiny MobileNet should repeat a block within a stage"
    for g in repeated:
        assert len({c.index for c in g}) == len(g)
        assert len({signature_of(net, c) for c in g}) == 1
    assert len({signature_of(net, c) for c in calls}) == len(groups)


def test_full_size_grids_enumerate_quickly() -> None:
    net = create_supernet("ds_mobilenet_v1")
    sigs = grid_signatures(net)  # 4e5 configs: per-unit enumeration, not iteration
    assert 400 < len(sigs) < 1000
    for cfg in (net.space.smallest(), net.space.largest(), net.space.at_fraction(0.5)):
        assert {signature_of(net, c) for c in net.block_calls(cfg)} <= set(sigs)


@pytest.mark.parametrize(
    ("name", "most"),
    [("ds_mobilenet_v1_tiny", 40), ("ds_resnet50_tiny", 10), ("ds_mobilenet_v1", 260)],
)
def test_covering_configs_make_every_signature_with_few_subnets(name: str, most: int) -> None:
    from dsnet_automl.latency import covering_configs

    net = create_supernet(name)
    sigs = grid_signatures(net)
    cover = covering_configs(net)
    made = set()
    for cfg, cfg_sigs in cover:
        assert cfg in net.space  # a real sub-net of the grid
        assert cfg_sigs == [signature_of(net, c) for c in net.block_calls(cfg)]
        made.update(cfg_sigs)
    assert made == set(sigs)
    assert len(cover) <= most < len(sigs)  # far fewer sub-nets than signatures
