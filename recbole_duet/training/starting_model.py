"""A training that starts from a trained model keeps that model when no epoch validates above it.

DUET started from a trained model (``cloud_checkpoint``, i.e. the generator stage of ``training_order:
cloud_first``, or ``backbone_checkpoint``) begins as exactly that model: the generated update starts at zero and
the dynamic layers as the identity. RecBole validates only after each epoch, so a training none of whose epochs
validated above its start kept its least bad epoch, a model worse on validation than the one it began as (Beauty,
DUET(GRU4Rec), seed 2022: 0.0504 against its cloud model's 0.0505, docs/study-log.md). Here the starting model is
validated once before training and competes for the best checkpoint like an epoch, kept only when it validates
strictly above every epoch (a model with nothing to train is its own result). It takes no part in early stopping, and RecBole's full-ranking validation draws from no
random stream, so the training itself runs exactly as it would without it (tests/test_starting_model.py).
"""

import copy


def declared(config, question):
    """What ``config``'s model class answers to ``question``, a classmethod it may define (e.g.
    ``starts_from_trained_model``); False for a class that does not define it, such as RecBole's own models. The
    runner asks the model class rather than testing the model's name, so a model of its own declares its needs."""
    answer = getattr(config.model_class, question, None)
    return bool(answer is not None and answer(config))


def starts_from_trained_model(config):
    """Whether ``config``'s model starts from a trained model rather than from a random initialisation."""
    return declared(config, "starts_from_trained_model")


def has_nothing_to_train(config):
    """Whether ``config``'s model comes trained and stays as loaded (the fine-tuning baseline: each device tunes its
    copy as it is scored), so that a run of it validates and tests the starting model without training it."""
    return declared(config, "has_nothing_to_train")


class StartingModel:
    """The model a training starts from, validated before the first epoch, to be kept if no epoch beats it.

    Build it before the training (or a resumed one: before its state is loaded), while ``trainer.model`` is still
    the model as loaded.
    """

    def __init__(self, trainer, train_data, valid_data, show_progress=False):
        self.state_dict = copy.deepcopy(trainer.model.state_dict())
        trainer.eval_collector.data_collect(train_data)  # what fit does first, for metrics that count training items
        valid_score, self.valid_result = trainer._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_score = float(valid_score)

    def keep_if_better(self, trainer, saved):
        """Make the starting model the trainer's best (its weights, best validation and, when ``saved``, the best
        checkpoint) when it validated strictly above every epoch, by ``valid_metric``'s direction.

        Returns:
            bool: whether the starting model was kept.
        """
        best = trainer.best_valid_score
        better = self.valid_score > best if trainer.valid_metric_bigger else self.valid_score < best
        if not better:
            return False
        trainer.model.load_state_dict(self.state_dict)
        trainer.best_valid_score, trainer.best_valid_result = self.valid_score, self.valid_result
        if saved:
            trainer._save_checkpoint(-1, verbose=False)  # epoch -1: before the first
        return True
