"""Build any supernet by name: the built-in DS-Net++ supernets and ``timm:<arch>`` (slicify).

This module sits above both :mod:`dsnet_automl.supernets` (the built-in registry) and
:mod:`dsnet_automl.timm_slicing` (timm models made sliceable, :func:`dsnet_automl.slicify`), so
neither imports the other's way up: the package's import graph stays one-way (slicing ->
supernets -> timm_slicing -> factory ->
routing / latency -> training -> search -> cli; a test checks there is no cycle). Everything
that takes a space or supernet name from a user goes through here.
"""

from __future__ import annotations

from pathlib import Path

from .config import SliceSpace
from .errors import SearchSpaceError
from .supernets import registry
from .supernets.base import Supernet
from .supernets.pretrained import load_into, read_state_dict

__all__ = ["TIMM_PREFIX", "create_supernet", "default_space", "list_supernets", "load_space"]

TIMM_PREFIX = "timm:"


def _is_yaml(spec: object) -> bool:
    text = str(spec)
    return text.endswith((".yaml", ".yml")) or Path(text).is_file()


def _timm_arch(name: str) -> str:
    import timm

    arch = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(arch):
        raise SearchSpaceError(f"{name!r}: {arch!r} is not a timm model name")
    return arch


def list_supernets() -> list[str]:
    """Registered supernet names (any ``timm:<arch>`` of a supported family works too)."""
    return registry.builtin_names()


def default_space(name: str) -> SliceSpace:
    """The default slice grid of a supernet name (``timm:<arch>``: the grid slicify derives)."""
    if str(name).startswith(TIMM_PREFIX):
        from .timm_slicing import derive_space

        return derive_space(_timm_arch(str(name)))
    return registry.builtin_space(str(name))


def load_space(spec: str | Path | SliceSpace) -> SliceSpace:
    """A :class:`SliceSpace` from an object, a YAML path, or a supernet name."""
    if isinstance(spec, SliceSpace):
        return spec
    if _is_yaml(spec):
        return SliceSpace.from_yaml(spec)
    return default_space(str(spec))


def create_supernet(
    name: str | Path | SliceSpace,
    *,
    num_classes: int | None = None,
    space: str | Path | SliceSpace | None = None,
    init: str | Path | None = None,
    **kwargs,
) -> Supernet:
    """Build a supernet, randomly initialised or from local weights (no downloads).

    Args:
        name: a registered name (``ds_mobilenet_v1``, ``ds_resnet50``, ``ds_deit_small`` and
            their ``_tiny`` variants), ``timm:<arch>``, a slice-space YAML path, or a
            :class:`SliceSpace`.
        num_classes: classifier outputs (default: 1000 for full-size, 10 for ``_tiny``).
        space: a slice grid overriding the default (YAML path or object); its largest values
            set the stored capacity, so it may narrow or widen the built-in grid.
        init: a local state dict / timm checkpoint (:mod:`.supernets.pretrained`): for
            ``timm:`` names loaded into the timm model before slicing, else into the supernet.
    """
    if isinstance(name, SliceSpace) or _is_yaml(name):
        space = load_space(name)
        name = space.supernet
    sp = load_space(space) if space is not None else None
    if str(name).startswith(TIMM_PREFIX):
        return _timm_supernet(str(name), num_classes, sp, init)
    net = registry.build_builtin(str(name), num_classes=num_classes, space=sp, **kwargs)
    if init is not None:
        head = f"units.{len(net.units) - 1}"  # the classifier unit (class count may differ)
        load_into(net, read_state_dict(init), source=str(init), target=net.name, classifier=head)
    return net


def _timm_supernet(
    name: str, num_classes: int | None, space: SliceSpace | None, init: str | Path | None
) -> Supernet:
    """A slicified timm architecture, randomly initialised (e.g. to load a checkpoint of a
    supernet made with :func:`dsnet_automl.slicify`) or, with ``init``, from local
    pretrained weights loaded into the timm model before slicing."""
    import timm

    from .timm_slicing import slicify

    arch = _timm_arch(name)
    kw = {} if num_classes is None else {"num_classes": num_classes}
    model = timm.create_model(arch, pretrained=False, **kw)
    if init is not None:
        classifier = model.pretrained_cfg.get("classifier")
        sd = read_state_dict(init)
        load_into(model, sd, source=str(init), target=name, classifier=classifier)
    return slicify(model, space, verify=False)
