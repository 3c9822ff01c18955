"""The cluster recipes in deploy/: the `ray up` config validates against Ray's own schema, the
KubeRay RayJob has the structure the operator needs, and the command both run is a valid
`dsnet-automl search` command line (every flag exists, parsed by the CLI itself)."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path

import jsonschema
import ray
import typer
import yaml

from dsnet_automl.cli import app

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
STORAGE = "postgresql+psycopg://dsnet:secret@db:5432/dsnet"


def _parse_search(command: str) -> dict:
    """Parse a `dsnet-automl search ...` command line with the CLI's own parser."""
    argv = shlex.split(command.replace("$DSNET_STORAGE", STORAGE))
    exe = argv.index(next(a for a in argv if a.endswith("dsnet-automl")))
    assert argv[exe + 1] == "search", argv
    group = typer.main.get_command(app)
    ctx = group.make_context("dsnet-automl", ["search"], resilient_parsing=True)
    search = group.get_command(ctx, "search")
    params = search.make_context("search", argv[exe + 2 :]).params  # raises on unknown flags
    assert params["storage"] == STORAGE and params["ray_address"] == "auto"
    assert params["storage_path"].startswith("/mnt/shared/")
    assert params["runs_dir"].startswith("/mnt/shared/")
    return params


def test_ray_up_config_validates_against_rays_schema() -> None:
    cfg = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["worker_ips"]
    setup = " ".join(cfg["setup_commands"])
    assert "[cluster]" in setup and "/mnt/shared" in setup
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    script = (DEPLOY / "ray" / "search.sh").read_text()
    command = script[script.index("~/dsnet/bin/dsnet-automl") :].replace("\\\n", " ")
    _parse_search(command.splitlines()[0])


def test_kuberay_rayjob_structure_and_command() -> None:
    job = yaml.safe_load((DEPLOY / "kuberay" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__  # the pinned Ray
    pods = [spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
    for pod in pods:
        (c,) = pod["containers"]
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/mnt/shared"}
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert claims == {"dsnet-shared"}
        (env,) = [e for e in c["env"] if e["name"] == "DSNET_STORAGE"]
        assert env["valueFrom"]["secretKeyRef"]["name"] == "dsnet-storage"
    _parse_search("dsnet-automl " + spec["entrypoint"].split("dsnet-automl", 1)[1])


def test_dockerfile_installs_the_cluster_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "cluster" in extras
    assert 'pip install --no-cache-dir -e ".[cluster]"' in (DEPLOY / "Dockerfile").read_text()
    assert ".venv" in (REPO / ".dockerignore").read_text().split()
