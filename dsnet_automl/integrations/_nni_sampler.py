"""An Optuna sampler driven by an in-process NNI tuner (TPE or naive evolution).

Why an Optuna sampler and not an NNI experiment: every trial stays an Optuna trial in the
study's storage (ask/tell), so the dashboard, resume, Pareto export and plots are unchanged, and
the same sampler serves the in-process runner and Ray Tune's ``OptunaSearch``.

How it maps:

* **Search space**: the Optuna intersection search space of finished trials (as Optuna's own
  relative samplers infer it), converted to NNI's ``choice/randint/uniform/loguniform/quniform``.
  Until one trial has finished it is empty and the first trial(s) are sampled at random (what
  NNI's tuners do first anyway). If the space changes (ranges edited between runs), the tuner is
  rebuilt and re-fed.
* **History**: the tuner is a function of the study. Trials it proposed are told their reward
  in ``after_trial``; every other finished trial (an earlier session: resume; enqueued retries;
  another process) is replayed into it before it proposes the next point.
* **Reward**: one number per trial, higher is better: the value of a single-objective study, or
  :func:`~dsnet_automl.integrations.nni.scalarize` of (accuracy, latency) for our
  (maximise, minimise) studies. A pruned trial counts with its last reported
  ``user_attrs["intermediate"]`` point (``[epoch, accuracy, latency_ms]``); a failed one is
  withdrawn from the tuner.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .._private_api import nni_evolution_replay, nni_evolution_seed
from ..errors import StudyError

__all__ = ["TUNERS", "NNISampler", "nni_spec"]

TUNERS = ("tpe", "evolution")
UNAVAILABLE = {
    "anneal": "NNI's Anneal tuner (nni.algorithms.hpo.hyperopt_tuner) fails on numpy 2: "
    "hyperopt 0.2.7's anneal calls int() on a 1-element array, NNI's receive_trial_result "
    "compares an array with [] (both measured here), and hyperopt imports the removed "
    "pkg_resources; use nni-tpe or nni-evolution",
}


def nni_spec(dist: BaseDistribution) -> dict[str, Any]:
    """The NNI search-space entry of one Optuna distribution (values map back exactly)."""
    if isinstance(dist, CategoricalDistribution):
        return {"_type": "choice", "_value": list(dist.choices)}
    if isinstance(dist, IntDistribution):
        if dist.log:
            return {"_type": "loguniform", "_value": [dist.low, dist.high]}
        if dist.step == 1:
            return {"_type": "randint", "_value": [dist.low, dist.high + 1]}  # upper exclusive
        return {"_type": "choice", "_value": list(range(dist.low, dist.high + 1, dist.step))}
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return {"_type": "loguniform", "_value": [dist.low, dist.high]}
        if dist.step is not None:
            return {"_type": "quniform", "_value": [dist.low, dist.high, dist.step]}
        return {"_type": "uniform", "_value": [dist.low, dist.high]}
    raise StudyError(f"NNI sampler: unsupported Optuna distribution {dist!r}")


def _to_optuna(dist: BaseDistribution, value: Any) -> Any:
    """An NNI value -> a value ``dist`` contains (rounded to ints/steps, clipped)."""
    if isinstance(dist, CategoricalDistribution):
        return value.item() if isinstance(value, np.generic) else value
    lo, hi, step = dist.low, dist.high, getattr(dist, "step", None)
    v = min(max(float(value), lo), hi)
    if step is not None:
        v = min(lo + round((v - lo) / step) * step, hi)
    return int(round(v)) if isinstance(dist, IntDistribution) else float(v)


def _covers(trial: FrozenTrial, space: dict[str, BaseDistribution]) -> bool:
    return all(n in trial.params and trial.distributions[n] == d for n, d in space.items())


@contextmanager
def _own_random(holder: dict[str, Any]) -> Iterator[None]:
    """Run NNI code that draws from Python's global ``random`` on a private, seeded state."""
    outer = random.getstate()
    random.setstate(holder["state"])
    try:
        yield
    finally:
        holder["state"] = random.getstate()
        random.setstate(outer)


class _Adapter:
    """One NNI tuner (``self.tuner``) behind ask / tell / drop / replay; NNI's Tuner API for
    the first three, per tuner for ``replay`` (feeding a trial it did not propose)."""

    tuner: Any

    def ask(self, pid: int) -> dict[str, Any]:
        return self.tuner.generate_parameters(pid)

    def tell(self, pid: int, params: dict[str, Any], reward: float) -> None:
        self.tuner.receive_trial_result(pid, params, reward)

    def drop(self, pid: int) -> None:
        self.tuner.trial_end(pid, False)

    def replay(self, params: dict[str, Any], reward: float) -> None:
        raise NotImplementedError


class _Tpe(_Adapter):
    def __init__(self, space: dict[str, Any], seed: int, *, startup_trials: int, **_: Any):
        from nni.algorithms.hpo.tpe_tuner import TpeTuner

        self.tuner = TpeTuner("maximize", seed=seed, tpe_args={"n_startup_jobs": startup_trials})
        self.tuner.update_search_space(space)

    def replay(self, params: dict[str, Any], reward: float) -> None:
        self.tuner.import_data([{"parameter": params, "value": reward}])


class _Evolution(_Adapter):
    """NNI's naive evolution; its first generation (``population`` random points) is seeded and
    replayed trials take the place of not-yet-evaluated random individuals (its own
    ``import_data`` is a no-op)."""

    def __init__(self, space: dict[str, Any], seed: int, *, population: int, **_: Any):
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner

        self.space = space
        self.rng = {"state": random.Random(seed).getstate()}
        self.tuner = EvolutionTuner("maximize", population_size=population)
        self.tuner.update_search_space(space)
        # update_search_space draws the first generation from an unseeded RandomState: redraw
        nni_evolution_seed(self.tuner, seed, population)

    def ask(self, pid: int) -> dict[str, Any]:
        with _own_random(self.rng):
            return super().ask(pid)

    def replay(self, params: dict[str, Any], reward: float) -> None:
        config = {
            k: {"_index": spec["_value"].index(params[k]), "_value": params[k]}
            if spec["_type"] == "choice"
            else params[k]
            for k, spec in self.space.items()
        }
        nni_evolution_replay(self.tuner, config, reward)


_ADAPTERS = {"tpe": _Tpe, "evolution": _Evolution}
# the tuners log every seed, replay and trial end at INFO on NNI's own console handler, which
# would write through the search's progress bar
_TUNER_LOGGERS = ("nni.tuner.tpe", "nni.algorithms.hpo.evolution_tuner")


class NNISampler(BaseSampler):
    """Optuna sampler whose relative proposals come from an NNI tuner (see module docstring).

    Args:
        tuner: ``"tpe"`` (NNI ``TpeTuner``) or ``"evolution"`` (NNI ``EvolutionTuner``).
        seed: seeds the tuner and the random fallback.
        population: evolution's population size (first generation = this many random points).
        startup_trials: TPE's random warm-up trials (NNI's default 20 would make a 12-trial
            study pure random search; Optuna's TPE here uses 4).
        reward: ``values -> float`` (higher is better); default: the single objective, or
            ``scalarize(values[0], values[1], ...)`` for (maximise, minimise) studies.
        max_latency_ms, latency_weight: passed to ``scalarize`` by the default reward.

    Raises:
        MissingExtraError: NNI is not installed.
        StudyError: unknown or unavailable tuner name.
    """

    def __init__(
        self,
        tuner: str = "tpe",
        *,
        seed: int | None = None,
        population: int = 6,
        startup_trials: int = 4,
        reward: Callable[[Sequence[float]], float] | None = None,
        max_latency_ms: float | None = None,
        latency_weight: float | None = None,
    ) -> None:
        from ._nni_common import LATENCY_WEIGHT, require_nni

        if tuner in UNAVAILABLE:
            raise StudyError(f"sampler nni-{tuner} is not available: {UNAVAILABLE[tuner]}")
        if tuner not in _ADAPTERS:
            raise StudyError(
                f"unknown NNI tuner {tuner!r}; allowed: {', '.join(f'nni-{t}' for t in TUNERS)}"
            )
        require_nni()
        for name in _TUNER_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tuner_name = tuner
        self._seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
        self._opts = {"population": population, "startup_trials": startup_trials}
        self._reward_fn = reward
        self._max_latency_ms = max_latency_ms
        self._latency_weight = LATENCY_WEIGHT if latency_weight is None else latency_weight
        self._random = RandomSampler(seed=self._seed)
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._ids = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self._tuner: Any = None
        self._space: dict[str, BaseDistribution] = {}
        self._pending: dict[int, tuple[Any, int, dict[str, Any]]] = {}
        self._fed: set[int] = set()
        self._builds = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (Ray checkpoints its searcher) without the tuner: it is rebuilt from the
        study on the next proposal."""
        state = self.__dict__.copy()
        state.update(_tuner=None, _space={}, _pending={}, _fed=set(), _ids=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ids = itertools.count()

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    # ------------------------------------------------------------------ rewards
    def _reward(self, study: Study, values: Sequence[float]) -> float:
        if self._reward_fn is not None:
            return float(self._reward_fn(values))
        dirs = study.directions
        if len(dirs) == 1:
            return float(values[0]) * (1 if dirs[0] == StudyDirection.MAXIMIZE else -1)
        if list(dirs) == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]:
            from ._nni_common import scalarize

            return scalarize(
                values[0],
                values[1],
                max_latency_ms=self._max_latency_ms,
                latency_weight=self._latency_weight,
            )
        raise StudyError(
            f"NNI sampler: no default reward for directions {[d.name for d in dirs]}; "
            "pass reward=callable(values) -> float"
        )

    def _trial_reward(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> float | None:
        if state == TrialState.COMPLETE and values is not None:
            return self._reward(study, values)
        if state == TrialState.PRUNED:
            seen = trial.user_attrs.get("intermediate")
            if seen and len(seen[-1]) == 1 + len(study.directions):
                return self._reward(study, seen[-1][1:])
            steps = trial.intermediate_values
            if steps and len(study.directions) == 1:
                return self._reward(study, [steps[max(steps)]])
        return None

    # ------------------------------------------------------------------ tuner state
    def _nni_params(self, trial: FrozenTrial) -> dict[str, Any]:
        return {n: trial.params[n] for n in self._space}

    def _start(self, space: dict[str, BaseDistribution]) -> None:
        self._reset()
        self._space = dict(space)
        spec = {n: nni_spec(d) for n, d in space.items()}
        seed = (self._seed + 7919 * self._builds) % 2**31
        self._tuner = _ADAPTERS[self.tuner_name](spec, seed, **self._opts)
        self._builds += 1

    def _sync(self, study: Study) -> None:
        """Replay every finished trial the tuner has not seen (resume, retries, other processes)."""
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        for t in study.get_trials(deepcopy=False, states=states):
            if t.number in self._fed or t.number in self._pending:
                continue
            self._fed.add(t.number)
            reward = self._trial_reward(study, t, t.state, t.values)
            if reward is not None and _covers(t, self._space):
                self._tuner.replay(self._nni_params(t), reward)

    # ------------------------------------------------------------------ Optuna API
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._intersection.calculate(study)
        return {n: d for n, d in space.items() if not d.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if search_space != self._space:
            self._start(search_space)
        self._sync(study)
        if trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued trial (a retry, an anchor): its parameters are given
        pid = next(self._ids)
        try:
            params = self._tuner.ask(pid)
        except RuntimeError:  # e.g. evolution's population is all out running: go random
            return {}
        self._pending[trial.number] = (self._tuner, pid, params)
        return {n: _to_optuna(d, params[n]) for n, d in search_space.items()}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        entry = self._pending.pop(trial.number, None)
        if self._tuner is None:
            return  # no tuner yet: _sync feeds this trial when the first one starts
        self._fed.add(trial.number)
        reward = self._trial_reward(study, trial, state, values)
        if entry is not None and entry[0] is self._tuner:
            _, pid, params = entry
            used = {n: _to_optuna(d, params[n]) for n, d in self._space.items()}
            if reward is not None and all(
                n in trial.params and math.isclose(trial.params[n], v)
                if isinstance(v, float)
                else trial.params.get(n) == v
                for n, v in used.items()
            ):
                self._tuner.tell(pid, params, reward)
                return
            self._tuner.drop(pid)
        if reward is not None and _covers(trial, self._space):
            self._tuner.replay(self._nni_params(trial), reward)
