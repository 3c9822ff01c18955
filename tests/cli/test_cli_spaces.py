from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from dsnet_automl import SliceSpace
from dsnet_automl.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "spaces" in result.output


def test_spaces_list_and_show():
    result = runner.invoke(app, ["spaces", "list"])
    assert result.exit_code == 0, result.output
    assert "ds_mobilenet_v1_tiny" in result.output and "ds_deit_small" in result.output
    result = runner.invoke(app, ["spaces", "show", "ds_resnet50_tiny"])
    assert result.exit_code == 0, result.output
    assert (
        "stage1.depth" in result.output
        and "smallest" in result.output
        and "largest" in result.output
    )


def test_spaces_export_round_trips(tmp_path):
    out = tmp_path / "x.yaml"
    result = runner.invoke(app, ["spaces", "export", "ds_deit_small_tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    space = SliceSpace.from_yaml(out)
    result = runner.invoke(app, ["spaces", "show", str(out)])
    assert result.exit_code == 0, result.output
    assert space.supernet == "ds_deit_small_tiny"


def test_errors_are_one_line_and_exit_1(tmp_path):
    result = runner.invoke(app, ["spaces", "show", "nope"])
    assert result.exit_code == 1
    assert "unknown supernet 'nope'" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("supernet: ds_resnet50_tiny\ndims:\n  stage1.width: [8, 4]\n")
    result = runner.invoke(app, ["spaces", "show", str(bad)])
    assert result.exit_code == 1 and "strictly increasing" in result.output


def test_spaces_export_without_out_writes_to_stdout():
    result = runner.invoke(app, ["spaces", "export", "ds_mobilenet_v1_tiny", "--format", "nni"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert spec["stage1.width"] == {"_type": "choice", "_value": [16, 24, 32]}
    result = runner.invoke(app, ["spaces", "export", "ds_mobilenet_v1_tiny"])
    assert result.exit_code == 0 and yaml.safe_load(result.stdout)["supernet"] == (
        "ds_mobilenet_v1_tiny"
    )
