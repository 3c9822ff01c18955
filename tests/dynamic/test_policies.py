"""Routing headroom and policies: oracle, multi-route SGS targets, cascade, budget knob,
runtime parity of the knob, and the search's headroom warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dsnet_automl.dynamic.export import export_dynamic
from dsnet_automl.errors import SearchSpaceError
from dsnet_automl.headroom import RouteOutcomes, best_at, collect_outcomes, knob_curves
from dsnet_automl.policies import (
    biased_routes,
    calibrate,
    cascade_chain,
    cascade_costs,
    cascade_routes,
    pick_knob,
)
from dsnet_automl.runtime import OrtDynamicNet
from dsnet_automl.search.headroom_check import Headroom, headroom_lines
from dsnet_automl.training.gate import route_targets
from tests.runtime.test_runtime import _dynamic


def _logits(pred: list[list[int]], conf: float = 4.0, classes: int = 3) -> torch.Tensor:
    """(N, K, C) logits whose argmax is pred[i][k]."""
    t = torch.zeros(len(pred), len(pred[0]), classes)
    for i, row in enumerate(pred):
        for k, c in enumerate(row):
            t[i, k, c] = conf
    return t


def test_oracle_on_a_hand_built_example():
    # 4 images, 3 routes costing 1, 2, 4; labels all 0
    pred = [
        [0, 0, 0],  # right everywhere -> route 0
        [1, 0, 0],  # right from route 1 -> route 1
        [1, 1, 0],  # right only on route 2 -> route 2
        [1, 1, 1],  # never right -> largest (oracle point) / route 0 (front)
    ]
    o = RouteOutcomes(_logits(pred), torch.zeros(4, dtype=torch.long), torch.zeros(4, 3), (1, 2, 4))
    p = o.oracle()
    assert p.accuracy == 0.75 and p.cost == pytest.approx((1 + 2 + 4 + 4) / 4)
    assert p.shares == (0.25, 0.25, 0.5)
    front = o.oracle_front()
    assert [(f.accuracy, f.cost) for f in front] == [
        (0.25, 1.0),
        (0.5, pytest.approx(1.25)),
        (0.75, pytest.approx(2.0)),
    ]
    assert best_at(front, 1.9).accuracy == 0.5
    assert [s.accuracy for s in o.static_front()] == [0.25, 0.5, 0.75]


def test_cheapest_targets_use_the_middle_route():
    labels = torch.zeros(3, dtype=torch.long)
    pred = [[1, 0, 0], [0, 0, 0], [1, 1, 1]]  # only middle+largest right; all right; none
    logits = _logits(pred)
    assert route_targets(logits, labels, "cheapest").tolist() == [1, 0, 2]
    assert route_targets(logits, labels, "ends").tolist() == [2, 0, 2]  # the reference's
    # a margin: route 1 is right but unsure on image 0 -> the largest
    logits[0, 1] = torch.tensor([0.5, 0.0, 0.4])
    assert route_targets(logits, labels, "cheapest", margin=0.5).tolist() == [2, 0, 2]
    with pytest.raises(SearchSpaceError, match="allowed"):
        route_targets(logits, labels, "middle")


def test_cascade_escalates_exactly_those_under_the_threshold_and_pays_both_suffixes():
    # route 0 confidences: high, low, low; route 1 confidences: -, high, low
    rl = torch.zeros(3, 3, 2)
    rl[0, 0] = torch.tensor([5.0, 0.0])  # conf ~0.993
    rl[1, 0] = torch.tensor([0.1, 0.0])  # conf ~0.525
    rl[2, 0] = torch.tensor([0.2, 0.0])  # conf ~0.55
    rl[1, 1] = torch.tensor([0.0, 5.0])
    rl[2, 1] = torch.tensor([0.0, 0.1])
    final, ran = cascade_routes(rl, 0.9, (0, 1, 2))
    assert final.tolist() == [0, 1, 2]
    assert ran.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    costs = cascade_costs(ran, (1.0, 2.0, 4.0), prefix_cost=0.5)
    assert costs.tolist() == [1.0, 1.0 + 1.5, 1.0 + 1.5 + 3.5]  # prefix once, each suffix
    final, ran = cascade_routes(rl, 0.9, cascade_chain(3, "ends"))
    assert final.tolist() == [0, 2, 2] and not ran[:, 1].any()
    assert cascade_routes(rl, 0.0, (0, 1, 2))[0].tolist() == [0, 0, 0]


def _random_outcomes(n: int = 400, k: int = 4, seed: int = 0) -> RouteOutcomes:
    g = torch.Generator().manual_seed(seed)
    return RouteOutcomes(
        torch.randn(n, k, 10, generator=g) * 3,
        torch.randint(0, 10, (n,), generator=g),
        torch.randn(n, k, generator=g),
        (1.0, 1.6, 2.5, 4.0),
        0.4,
    )


def test_knob_is_monotone_and_hits_a_val_budget_within_5_percent():
    o = _random_outcomes()
    lo, hi = o.bias_range()
    costs = [o.gate(b).cost for b in np.linspace(lo, hi, 101)]
    assert all(
        b <= a + 1e-12 for a, b in zip(costs, costs[1:], strict=False)
    )  # bias up: never dearer
    assert costs[0] == pytest.approx(4.0) and costs[-1] == pytest.approx(1.0)
    chain = (0, 1, 2, 3)
    ccosts = [o.cascade(t, chain).cost for t in np.linspace(0, 1, 101)]
    assert all(b >= a - 1e-12 for a, b in zip(ccosts, ccosts[1:], strict=False))  # dearer
    for budget in (1.5, 2.0, 3.0):
        g = o.gate_at(budget)
        assert budget * 0.95 <= g.cost <= budget
        c = o.cascade_at(budget, chain)
        assert budget * 0.95 <= c.cost <= budget
        # the stored curve gives the same within 5%
        cal = pick_knob(knob_curves(o, chain)["gate"], budget)
        assert cal.reachable and budget * 0.95 <= cal.expected_cost <= budget
    assert not calibrate(lambda b: 5.0, 1.0, 0, 1, increasing=True).reachable


def test_biased_routes_zero_bias_is_the_gate():
    g = torch.randn(50, 3)
    assert torch.equal(biased_routes(g, (1, 2, 3), 0.0), g.argmax(1))
    assert (biased_routes(g, (1, 2, 3), 1e6) == 0).all()
    assert (biased_routes(g, (1, 2, 3), -1e6) == 2).all()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dyn = _dynamic("ds_mobilenet_v1_tiny", x)
    loader = [(x, torch.randint(0, 10, (32,)))]
    o = collect_outcomes(dyn, loader, prefix_cost=dyn.prefix_cost())
    dyn.metadata = {"calibration": knob_curves(o, dyn.chain)}
    d = tmp_path_factory.mktemp("knob")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_dynamic(dyn, d, formats=("onnx",))
    return dyn, d, x, o


@pytest.mark.parametrize("policy,knob", [("gate", 0.0), ("gate", 3.0), ("gate", -2.0),
                                         ("cascade", 0.3), ("cascade", 0.9)])  # fmt: skip
def test_runtime_policy_and_knob_give_the_torch_routes(exported, policy, knob):
    dyn, d, x, o = exported
    rt = OrtDynamicNet(d, threads=1)
    dyn.set_policy(policy, knob)
    rt.set_policy(policy, knob)
    with torch.no_grad():
        ref, ref_routes = dyn(x)
    got, routes = rt.run(x.numpy())
    assert np.array_equal(routes, ref_routes.numpy())
    assert float(np.abs(got - ref.numpy()).max()) < 1e-3 * max(1.0, float(ref.abs().max()))
    if policy == "gate":  # the torch forward routes as the outcome arithmetic does
        assert torch.equal(ref_routes, o.gate_routes(knob))
    else:
        assert torch.equal(ref_routes, cascade_routes(o.route_logits, knob, dyn.chain)[0])
    dyn.set_policy("gate", 0.0)


def test_runtime_budget_picks_the_val_knob(exported):
    dyn, d, _, o = exported
    rt = OrtDynamicNet(d, threads=1)
    lo, hi = o.costs[0], o.costs[-1]
    res = rt.set_budget(0.5 * (lo + hi), "gate")
    assert res["reachable"] and res["expected_cost"] <= 0.5 * (lo + hi)
    assert o.gate(res["knob"]).cost == pytest.approx(res["expected_cost"])
    assert not rt.set_budget(0.1 * lo, "gate")["reachable"]


def test_headroom_warning_fires_when_routes_are_overhead_bound():
    bound = Headroom(1.31, 0.596, 0.781, 0.69, 0.89, 0.93)
    lines = headroom_lines(bound, "jetson", 1)
    assert len(lines) == 2 and "routing can save at most 24%" in lines[1]
    assert "overhead-bound on jetson at batch 1" in lines[1]
    ok = Headroom(2.6, 1.03, 2.72, 1.9, 0.70, 0.80)
    lines = headroom_lines(ok, "jetson", 32)
    assert len(lines) == 1 and "+10.0 pt" in lines[0]


def test_route_heads_cascade_runs_each_route_through_its_own_head_and_exports(tmp_path):
    from torch import nn

    from dsnet_automl.dynamic.gate import Gate, pool_features
    from dsnet_automl.dynamic.routing import DynamicNet

    x = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    base = _dynamic("ds_deit_small_tiny", x)  # its random routes give varied confidences
    c = base.gate.in_channels
    torch.manual_seed(3)
    heads = nn.ModuleList(Gate(c, 1) for _ in range(base.num_routes))
    with torch.no_grad():
        for h in heads:
            torch.nn.init.normal_(h.att2.weight, std=0.3)
        for p in base.supernet.parameters():  # the classifier: spread the logits
            if p.dim() == 2 and p.shape[0] == base.supernet.num_classes:
                p.mul_(10.0)
    dyn = DynamicNet(
        base.supernet, Gate(c, base.num_routes, attention=False), base.route_space,
        route_heads=heads,
    ).eval()  # fmt: skip
    with torch.no_grad():
        h0 = dyn.features(x)
        ref = [dyn.supernet.run_steps(hd.attend(h0, pool_features(h0)), suf)
               for hd, suf in zip(heads, dyn.suffixes, strict=True)]  # fmt: skip
        conf = ref[0].softmax(1).amax(1).sort().values
        knob = float(conf[11] + conf[12]) / 2  # half of the images escalate
        dyn.set_policy("cascade", knob, "ends")
        out, routes = dyn(x)
    k = dyn.num_routes - 1
    assert set(routes.tolist()) <= {0, k} and (routes == k).any() and (routes == 0).any()
    for i, r in enumerate(routes.tolist()):
        assert torch.allclose(out[i], ref[r][i], atol=1e-5)
    dyn.save(tmp_path / "b")
    back = DynamicNet.load(tmp_path / "b")
    assert back.policy == "cascade" and back.chain == (0, k) and back.knob == knob
    with torch.no_grad():
        assert torch.allclose(back(x)[0], out, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_dynamic(back, tmp_path / "b" / "export", formats=("onnx",))
    rt = OrtDynamicNet(tmp_path / "b", threads=1)
    got, r2 = rt.run(x.numpy())
    assert np.array_equal(r2, routes.numpy())
    assert float(np.abs(got - out.numpy()).max()) < 1e-3 * max(1.0, float(out.abs().max()))
