"""Device profiles: shipped YAMLs validate, aliases resolve, unknown names list what exists,
and an installed package finds them without the repository's hw_profiles/."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

import dsnet_automl
from dsnet_automl.errors import LatencyTableError
from dsnet_automl.latency import list_profiles, load_profile
from dsnet_automl.latency.profiles import _packaged_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {
    "jetson-nano",
    "jetson-orin-nano",
    "jetson-agx-orin",
    "raspberry-pi-5",
    "host-cpu",
    "cuda",
}


def test_shipped_profiles_load_with_sources() -> None:
    profiles = {p.name: p for p in list_profiles()}
    assert set(profiles) >= SHIPPED
    for p in profiles.values():
        figures = [*p.peak_flops.values(), p.memory_bandwidth, p.efficiency, p.layer_overhead_s]
        assert all(f.value > 0 and len(f.source) > 10 for f in figures), p.name


def test_alias_and_detection() -> None:
    assert load_profile("jetson").name == "jetson-orin-nano"
    host = load_profile("host-cpu")
    assert host.threads and host.threads >= 1
    assert host.device == "cpu" and load_profile("cuda", detect_host=False).device == "cuda"


def test_unknown_hw_lists_known_profiles() -> None:
    with pytest.raises(LatencyTableError) as e:
        load_profile("jetsn")
    msg = str(e.value)
    assert (
        "'jetsn'" in msg and all(n in msg for n in SHIPPED) and "jetson -> jetson-orin-nano" in msg
    )


def test_bad_profile_yaml_names_the_field(tmp_path: Path) -> None:
    text = (REPO / "hw_profiles" / "raspberry-pi-5.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("kind: cpu", "kind: fpga"))
    with pytest.raises(LatencyTableError, match=r"field 'kind'"):
        load_profile(str(bad))


def test_one_copy_of_the_profiles_shipped_as_package_data(tmp_path: Path, monkeypatch) -> None:
    """hw_profiles/*.yaml is the only copy: the package's profiles_data is a link to it (its
    files go into the wheel as package data), and no other YAML in the package repeats one."""
    repo = sorted((REPO / "hw_profiles").glob("*.yaml"))
    assert {p.stem for p in repo} >= SHIPPED
    assert all(os.path.samefile(p, _packaged_dir() / p.name) for p in repo)
    texts = {p.read_bytes() for p in repo}
    copies = [
        str(p)
        for p in Path(dsnet_automl.__file__).parent.rglob("*.yaml")
        if p.read_bytes() in texts and not any(os.path.samefile(p, r) for r in repo)
    ]
    assert copies == [], f"second copies of hw_profiles/*.yaml: {copies}"
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert cfg["tool"]["setuptools"]["package-data"]["dsnet_automl.latency"] == [
        "profiles_data/*.yaml"
    ]
    monkeypatch.chdir(tmp_path)  # no ./hw_profiles here: the packaged copy must be found
    monkeypatch.delenv("DSNET_HW_PROFILES", raising=False)
    assert {p.name for p in list_profiles()} >= SHIPPED
    assert load_profile("jetson").name == "jetson-orin-nano"
