"""The package's only uses of third-party names that are not public API, each because no public
one does the job; ``tests/test_private_api.py`` allows private third-party names here and nowhere
else, so a timm or NNI upgrade that moves them breaks in this one file.

- **timm's MBConv block classes** (``EdgeResidual``, ``InvertedResidual``, ``SqueezeExcite``)
  live in ``timm.models._efficientnet_blocks``; timm 1.x re-exports none of them from a public
  module (the old ``timm.models.efficientnet_blocks`` is gone). ``slicify`` must recognise and
  rebuild exactly these blocks.
- **NNI's evolution tuner** draws its first generation in ``update_search_space`` from an
  unseeded ``np.random.RandomState()`` and has no seed argument, and its ``import_data`` is a
  no-op. A seeded, repeatable first generation means redrawing it with the tuner's own
  ``_random_generate_individual``; a replayed trial takes the place of a not-yet-evaluated
  member of its ``population``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["nni_evolution_replay", "nni_evolution_seed", "timm_mbconv_blocks"]


def timm_mbconv_blocks() -> tuple[type, type, type]:
    """``(EdgeResidual, InvertedResidual, SqueezeExcite)`` of timm's EfficientNet family."""
    from timm.models._efficientnet_blocks import EdgeResidual, InvertedResidual, SqueezeExcite

    return EdgeResidual, InvertedResidual, SqueezeExcite


def nni_evolution_seed(tuner: Any, seed: int, population: int) -> None:
    """Redraw an NNI ``EvolutionTuner``'s first generation (``population`` random individuals)
    from a ``RandomState(seed)``, after its ``update_search_space`` drew it unseeded."""
    import numpy as np

    tuner.random_state = np.random.RandomState(seed)
    tuner.population = []
    for _ in range(population):
        tuner._random_generate_individual()


def nni_evolution_replay(tuner: Any, config: dict[str, Any], reward: float) -> None:
    """Put a finished trial (NNI-encoded ``config``, ``reward``) into an ``EvolutionTuner``'s
    population, in the place of a not-yet-evaluated random individual if there is one."""
    from nni.algorithms.hpo.evolution_tuner import Individual

    pop = tuner.population
    fresh = next((i for i, ind in enumerate(pop) if ind.result is None), None)
    if fresh is not None:
        pop.pop(fresh)
    pop.append(Individual(config=config, result=reward))
