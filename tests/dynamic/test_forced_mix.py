"""Forced route mixes (used by the speed benchmarks) give the intended route histogram."""

import pytest
import torch

from dsnet_automl import create_supernet
from dsnet_automl.dynamic.forced_mix import force_route_mix, route_counts
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.errors import SearchSpaceError


@pytest.fixture(scope="module")
def dyn():
    torch.manual_seed(0)
    return DynamicNet.build(create_supernet("ds_mobilenet_v1_tiny")).eval()


@pytest.mark.parametrize(
    "mix", [[0, 0, 0, 1], [1, 0, 0, 0], [0.4, 0.3, 0.2, 0.1], [0.25] * 4, [0.5, 0, 0.5, 0]]
)
def test_forced_mix_histogram_exact_and_per_sample(dyn, mix):
    x = torch.randn(48, *dyn.supernet.input_size)
    routes = force_route_mix(dyn, x, mix)
    want = route_counts(mix, len(x))
    assert torch.bincount(routes, minlength=4).tolist() == want
    with torch.no_grad():
        _, batched = dyn(x)
        single = torch.cat([dyn(x[i : i + 1])[1] for i in range(len(x))])
    # the decision is per sample: batch size does not change it
    assert torch.equal(batched, routes) and torch.equal(single, routes)


def test_forced_mix_bad_input(dyn):
    with pytest.raises(SearchSpaceError, match="3 shares but the net has 4"):
        force_route_mix(dyn, torch.randn(8, *dyn.supernet.input_size), [1, 1, 1])
    with pytest.raises(SearchSpaceError, match="non-negative"):
        route_counts([-1, 2], 10)


def test_route_counts_sum():
    assert route_counts([1, 1, 1], 10) == [4, 3, 3]
    assert sum(route_counts([0.13, 0.29, 0.58], 33)) == 33
