"""The same sampled negatives at every validation of a run (``fixed_valid_negatives``).

Under sampled evaluation (``uni100``, ``pop100``, ...) RecBole's evaluation loader draws each case's negatives
from numpy's global generator as it builds a batch, so every validation of a run ranks the target against new
items. Early stopping then compares epochs measured on different draws: the draws alone move a validation score
by more than the margins it decides on, and the epoch kept is partly the one whose draw was easiest
(``benchmarks/valid_noise.py`` measures both). With ``fixed_valid_negatives: True`` each validation draws under
numpy seeded from the run's seed, so every epoch meets the same negatives, and numpy's own state is restored
after, so the training's draws do not depend on whether or how often it validates.
"""

import contextlib

import numpy as np

# Validation draws from its own stream, not the test's: the benchmark harness tests under numpy seeded with the
# run's seed, and a model chosen on the very negatives it is tested on would be chosen with the test's help.
VALIDATION_STREAM = 1


@contextlib.contextmanager
def numpy_seeded(seed):
    """numpy's global generator seeded with ``seed`` (anything ``np.random.seed`` takes) inside, and back to its
    own state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def validation_seed(run_seed):
    """The numpy seed of every validation of a run seeded ``run_seed``."""
    return [run_seed, VALIDATION_STREAM]


def validation_draws(config):
    """The context a validation of ``config``'s run draws its negatives in: numpy seeded for the run when
    ``fixed_valid_negatives`` asks for it, numpy as it stands otherwise. Anything else that validates a model of
    the run (the benchmark harness scoring a fine-tuned member) enters it too, to meet the same negatives."""
    if config["fixed_valid_negatives"]:
        return numpy_seeded(validation_seed(config["seed"]))
    return contextlib.nullcontext()


class FixedValidNegativesMixin:
    """Every validation inside :func:`validation_draws`."""

    def _valid_epoch(self, valid_data, show_progress=False):
        with validation_draws(self.config):
            return super()._valid_epoch(valid_data, show_progress=show_progress)
