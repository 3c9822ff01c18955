"""Front routing, result reuse, fraction routing and old study DBs, accuracy-table reuse and
the static+attention baseline in a whole search on a tiny supernet."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from dsnet_automl import create_supernet
from dsnet_automl.config import RouteSpace
from dsnet_automl.errors import SearchSpaceError
from dsnet_automl.search import load_study, run_search
from dsnet_automl.search.route_menu import prefix_fixed
from dsnet_automl.search.space import TrialParams, front_routes, suggest


def _complete(s: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return s.get_trials(states=(TrialState.COMPLETE,))


def test_front_routes_are_valid_distinct_sorted_and_share_the_prefix(make_study):
    cfg = load_study(make_study("menu", trials=4, static_trials=0))
    res = run_search(cfg, progress=False)
    menu_attr = res.study.user_attrs["route_menu"]
    net = create_supernet("ds_mobilenet_v1_tiny")
    menu = [net.space.config(v) for v in menu_attr]
    assert 2 <= len(menu) <= cfg.route_menu_size and len(set(menu)) == len(menu)
    fixed = prefix_fixed(net)
    assert fixed and all(c[d] == v for c in menu for d, v in fixed.items())
    for t in _complete(res.study):
        p = TrialParams.from_dict(t.params)
        assert p.routing == "front" and p.front == tuple(sorted(set(p.front)))
        routes = list(RouteSpace.from_dict(t.user_attrs["routes"]).configs)
        assert len(set(routes)) == len(routes) >= 2 and set(routes) <= set(menu)
        lat = t.user_attrs["route_latency_ms"]
        assert lat == sorted(lat)
        assert 0.0 <= t.user_attrs["test_accuracy"] <= 1.0
    # the predictor's report is in the study; the menu is pinned: a re-run keeps it
    assert res.study.user_attrs["accuracy_predictor"]["n_holdout"] >= 1
    res2 = run_search(cfg.model_copy(update={"route_menu_size": 3}), progress=False)
    assert res2.study.user_attrs["route_menu"] == menu_attr
    assert res2.knowledge.evaluated == 0  # accuracy table reused: no sub-net measured twice


def test_front_routes_positions():
    net = create_supernet("ds_mobilenet_v1_tiny")
    menu = [net.space.smallest(), net.space.at_fraction(0.5), net.space.largest()]
    rs = front_routes(menu, [2, 0, 2], net.macs)
    assert list(rs.configs) == [menu[0], menu[2]] and list(rs.costs) == sorted(rs.costs)
    assert len(front_routes(menu, [1, 1], net.macs)) == 2  # one point: paired with the widest
    with pytest.raises(SearchSpaceError, match="outside the route menu"):
        front_routes(menu, [0, 3], net.macs)
    trial = optuna.create_study().ask()
    p = suggest(trial, load_study.__globals__["Ranges"](), menu_size=3)
    assert set(trial.params) >= {"front_0", "front_1", "front_2", "front_3", "lam"}
    assert p.front == tuple(sorted({trial.params[f"front_{i}"] for i in range(4)}))


def test_equal_routes_and_gate_params_reuse_the_result(make_study):
    path = make_study("reuse", trials=2, static_trials=0, sampler="random")
    cfg = load_study(path)
    res = run_search(cfg.model_copy(update={"trials": 1}), progress=False)
    first = _complete(res.study)[0]
    res.study.enqueue_trial(first.params)
    res2 = run_search(cfg, progress=False)
    second = res2.study.trials[1]
    assert second.state == TrialState.COMPLETE and second.params == first.params
    assert second.user_attrs.get("reused") is True and second.values == first.values
    assert second.user_attrs["bundle"] == first.user_attrs["bundle"]


def test_fraction_routing_and_an_old_study_db_resume(make_study):
    path = make_study("frac", trials=2, static_trials=0, routing="fraction")
    res = run_search(load_study(path), progress=False)
    assert all("min_frac" in t.params for t in res.study.trials)
    assert "route_menu" not in res.study.user_attrs
    # the same study YAML without 'routing' (as before front routing existed) resumes with
    # fraction routing: the old trials stay, the new ones are of the same parametrisation
    old = make_study("frac", trials=3, static_trials=0)
    res2 = run_search(load_study(old), progress=False)
    assert len(_complete(res2.study)) == 3
    assert all("min_frac" in t.params for t in res2.study.trials)


def test_static_attention_front_beside_static(make_study, tmp_path):
    path = make_study("att", trials=2, static_trials=3)
    res = run_search(load_study(path), progress=False)
    static_front = {t.number for t in res.static.best_trials}
    att = _complete(res.static_att)
    assert {t.user_attrs["static_trial"] for t in att} == static_front
    for t in att:
        st = res.static.trials[t.user_attrs["static_trial"]]
        assert t.values[1] == st.values[1]  # same sub-net, same latency
        assert t.user_attrs["bare_accuracy"] == st.values[0]
        assert 0.0 <= t.user_attrs["test_accuracy"] <= 1.0
    # the static study's first trials are the predicted front's points (real accuracies)
    assert res.static.trials[0].user_attrs["predicted_front"] is True
    assert (load_study(path).run_dir / "static_front.csv").is_file()
    # a re-run trains nothing again
    res2 = run_search(load_study(path), progress=False)
    assert len(res2.static_att.trials) == len(att)


def test_result_key_depends_on_checkpoint_data_and_seed():
    import dataclasses
    from types import SimpleNamespace

    from dsnet_automl.search.objective import result_key
    from dsnet_automl.search.study_config import StudyConfig

    net = create_supernet("ds_mobilenet_v1_tiny")
    menu = [net.space.smallest(), net.space.largest()]
    routes = front_routes(menu, [0, 1], net.macs)
    p = TrialParams(2, None, None, None, 1.0, 0.5, 1e-3, 1.0, 1, 16, front=(0, 1))
    study = StudyConfig(name="k")
    ctx = SimpleNamespace(study=study, ckpt_hash="a" * 16, data="digits-hard")
    key = result_key(routes, p, ctx)
    assert key == result_key(routes, p, ctx)
    assert key != result_key(routes, p, SimpleNamespace(**{**vars(ctx), "ckpt_hash": "b" * 16}))
    assert key != result_key(routes, p, SimpleNamespace(**{**vars(ctx), "data": "digits"}))
    other_seed = SimpleNamespace(**{**vars(ctx), "study": study.model_copy(update={"seed": 1})})
    assert key != result_key(routes, p, other_seed)
    assert key != result_key(routes, dataclasses.replace(p, lam=2.0), ctx)
