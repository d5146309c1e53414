"""RecBole's ``HyperTuning`` (hyperopt, no ray) on today's hyperopt, naming the best trial in its result file.

RecBole 1.2.1 pins hyperopt 0.2.5, which imports ``pkg_resources`` (gone from setuptools 81 on). From 0.2.7 on,
hyperopt samples with numpy's ``Generator`` while RecBole's exhaustive search hands it a ``RandomState``,
which has no ``integers``: every ``choice`` parameter fails. The exhaustive search here draws nothing: it walks
the grid of ``choice`` values in order, each point once. ``random`` and ``bayes`` are RecBole's, unchanged.
"""

import itertools
from functools import partial

from hyperopt.base import miscs_update_idxs_vals
from recbole.trainer.hyper_tuning import HyperTuning as RecBoleHyperTuning
from recbole.trainer.hyper_tuning import _parameters


def choice_grid(space):
    """Every point of a space of ``choice`` parameters, as ``{name: index of the chosen value}`` dicts."""
    choices = _parameters(space)
    others = sorted(set(space) - set(choices))
    if others:
        raise ValueError(
            f"Exhaustive search takes 'choice' parameters only, not {others}: use algo 'random' or 'bayes'."
        )
    names = list(choices)
    return [dict(zip(names, point)) for point in itertools.product(*(range(len(choices[name])) for name in names))]


def grid_search(new_ids, domain, trials, seed, grid):
    """A hyperopt ``algo`` proposing the points of ``grid`` in order (``seed`` is unused: nothing is drawn)."""
    docs = []
    for new_id in new_ids:
        position = len(trials.trials) + len(docs)
        if position >= len(grid):
            break
        point = grid[position]
        misc = {"tid": new_id, "cmd": domain.cmd, "workdir": domain.workdir}
        idxs = {name: [new_id] for name in point}
        miscs_update_idxs_vals([misc], idxs, {name: [index] for name, index in point.items()})
        docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
    return docs


class HyperTuning(RecBoleHyperTuning):
    """RecBole's HyperTuning with the grid walk above for ``algo="exhaustive"`` (its default)."""

    def __init__(self, objective_function, algo="exhaustive", **kwargs):
        super().__init__(objective_function, algo=algo, **kwargs)
        if algo == "exhaustive":
            self.algo = partial(grid_search, grid=choice_grid(self.space))

    def export_result(self, output_file=None):
        """RecBole's report (every trial's parameters, valid and test results), then the best trial."""
        super().export_result(output_file)
        with open(output_file, "a", encoding="utf-8") as file:
            file.write(f"Best params: {self.params2str(self.best_params)}\nBest valid score: {self.best_score}\n")
