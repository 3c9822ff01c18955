from __future__ import annotations

import random

import pytest

from dsnet_automl import RouteSpace, SearchSpaceError, SliceSpace, SubnetConfig, load_space


@pytest.fixture
def space() -> SliceSpace:
    return SliceSpace("toy", (("a.width", (8, 16, 24)), ("a.ratio", (1.5, 2.0, 4.0))), (3, 8, 8))


def test_config_is_order_independent_and_hashable(space):
    a = SubnetConfig.of("toy", {"a.width": 8, "a.ratio": 2.0})
    b = SubnetConfig.of("toy", {"a.ratio": 2, "a.width": 8})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a["a.width"] == 8 and a.replace(**{"a.width": 16})["a.width"] == 16


@pytest.mark.parametrize("fmt", ["dict", "json", "yaml"])
def test_config_round_trip(space, fmt):
    cfg = space.sample(random.Random(3))
    if fmt == "dict":
        back = SubnetConfig.from_dict(cfg.to_dict())
    elif fmt == "json":
        back = SubnetConfig.from_json(cfg.to_json())
    else:
        back = SubnetConfig.from_yaml(cfg.to_yaml())
    assert back == cfg and hash(back) == hash(cfg)


def test_space_queries(space):
    assert space.size == 9
    assert space.largest().as_dict() == {"a.width": 24, "a.ratio": 4.0}
    assert space.smallest().as_dict() == {"a.width": 8, "a.ratio": 1.5}
    assert space.at_fraction(0.5).as_dict() == {"a.width": 16, "a.ratio": 2.0}
    assert len(set(space)) == 9 and all(c in space for c in space)
    rng1, rng2 = random.Random(7), random.Random(7)
    assert [space.sample(rng1) for _ in range(5)] == [space.sample(rng2) for _ in range(5)]


def test_space_yaml_round_trip(space, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(space.to_yaml(header="toy"))
    assert SliceSpace.from_yaml(p) == space
    assert load_space(p) == space


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (
            {"a.width": 12, "a.ratio": 2.0},
            r"a\.width=12 is not in the grid; allowed: \[8, 16, 24\]",
        ),
        ({"a.width": 8, "a.ratio": 2.0, "b.depth": 1}, r"unknown dimension 'b\.depth'.*allowed"),
        ({"a.width": 8}, r"lacks dimension 'a\.ratio'"),
    ],
)
def test_bad_configs_raise_value_error(space, values, match):
    with pytest.raises(ValueError, match=match):
        space.validate(SubnetConfig.of("toy", values))


def test_config_of_other_supernet_is_rejected(space):
    with pytest.raises(SearchSpaceError, match="belongs to supernet 'other', not 'toy'"):
        space.validate(SubnetConfig.of("other", space.largest().as_dict()))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("supernet: toy\ndims:\n  a.width: [16, 8]\n", r"dims\.a\.width.*strictly increasing"),
        ("supernet: toy\ndims:\n  a.width: 8\n", r"dims\.a\.width = 8; allowed: a non-empty list"),
        ("supernet: toy\ndims:\n  a.width: [8, x]\n", r"dims\.a\.width: value 'x' is not a finite"),
        ("supernet: toy\ndims: {a: [1]}\ninput: 3\n", r"unknown field\(s\) \['input'\]"),
        ("dims: {a: [1]}\n", r"field 'supernet' must be"),
        ("supernet: toy\ndims: {a: [1]}\ninput_size: [3, 0, 8]\n", r"input_size = \[3, 0, 8\]"),
        ("supernet: toy\ndims: [\n", r"not valid YAML"),
    ],
)
def test_bad_space_file_names_file_field_value(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SearchSpaceError, match=match) as e:
        SliceSpace.from_yaml(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(SearchSpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_route_space_sorted_by_cost(space):
    cfgs = list(space)
    routes = RouteSpace.by_cost(cfgs, lambda c: c["a.width"] * c["a.ratio"])
    assert routes.costs == tuple(sorted(routes.costs))
    assert routes[0] == space.smallest() and routes[-1] == space.largest() and len(routes) == 9
    assert RouteSpace.from_dict(routes.to_dict()) == routes
    assert RouteSpace.from_yaml(routes.to_yaml()) == routes
    with pytest.raises(SearchSpaceError, match="sorted smallest first"):
        RouteSpace((space.smallest(), space.largest()), (2.0, 1.0))
    with pytest.raises(SearchSpaceError, match="distinct"):
        RouteSpace((space.smallest(), space.smallest()))
    with pytest.raises(SearchSpaceError, match="several supernets"):
        RouteSpace((space.smallest(), SubnetConfig.of("x", {"a.width": 8})))
