"""Hyper-parameter search on Optuna: one study in a database that several processes and machines share, with
each epoch's validation reported so that a pruner can stop a hopeless trial at once.

RecBole's own search (hyperopt in one process, or ray, which cannot import on today's stack) trains every trial
to the end on one machine. Here a study lives in any SQLAlchemy storage (a SQLite file by default; PostgreSQL to
share it between machines), ``--workers K`` runs K processes on it, and the same command started on several
machines joins the same study. The search space is RecBole's file format, read unchanged (``choice``,
``uniform``, ``loguniform`` with natural-log bounds as hyperopt's, ``quniform``).

A grid search (every parameter a ``choice``) enqueues each point once, when the study is created (creating a
study is atomic in the database, so one process does it); workers then take queued trials until none is left, so
no point runs twice however many workers share the study. Other samplers (``tpe``, ``random``) draw until the
study holds ``--n-trials`` trials. A trial that raises is recorded as failed with its reason and the study goes
on; a pruned trial is recorded with the epoch it stopped at.
"""

import ast
import contextlib
import fcntl
import itertools
import math
import multiprocessing
import os
import statistics
import warnings
from functools import partial

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread

from recbole_duet.errors import ConfigFileError
from recbole_duet.search.choices import PRUNERS, SAMPLERS

SPACE_KINDS = ("choice", "uniform", "loguniform", "quniform")
STORAGE_TIMEOUT_S = 60  # SQLite: how long a writer waits for another's lock
# A training trial's worker records a heartbeat this often; a running trial silent for two intervals is taken for
# one whose worker died (killed, or its machine gone), failed and queued again, so a resumed search still runs
# every grid point.
HEARTBEAT_S = 60
RETRIES = 2  # how often a trial whose worker died is queued again: a trial that kills its worker stops there


def read_search_space(path):
    """``{name: (kind, values)}`` from a RecBole search-space file (``name kind values`` per line).

    Raises:
        ConfigFileError: naming the file and line of a line that is not one of the four kinds.
    """
    space = {}
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                name, kind, values = line.split(maxsplit=2)
                if kind not in SPACE_KINDS:
                    raise ValueError(f"kind '{kind}' is not one of {list(SPACE_KINDS)}")
                parsed = ast.literal_eval(values.strip()) if kind == "choice" else [float(v) for v in values.split(",")]
                if kind == "choice" and not (isinstance(parsed, list) and parsed):
                    raise ValueError("a choice takes a non-empty [list]")
                if kind != "choice" and len(parsed) != (3 if kind == "quniform" else 2):
                    raise ValueError(f"{kind} takes low,high" + (",q" if kind == "quniform" else ""))
            except (ValueError, SyntaxError) as error:
                raise ConfigFileError(f"Search space '{path}' line {number}: {error} ({line.strip()!r})") from None
            space[name] = (kind, parsed)
    if not space:
        raise ConfigFileError(f"Search space '{path}' names no parameter")
    return space


def _is_plain(value):
    return value is None or isinstance(value, (bool, int, float, str))


def offered(values):
    """A ``choice``'s values as Optuna holds them: as they are, or all as their text when any is not a plain value
    (e.g. layer sizes), since Optuna's categorical values must be plain. The suggestions, the grid's queued points
    and the trials' recorded parameters all use this one form."""
    return list(values) if all(_is_plain(value) for value in values) else [repr(value) for value in values]


def suggest(trial, name, kind, values):
    """The trial's value of one parameter; a ``choice`` of lists (e.g. layer sizes) is offered as their text."""
    if kind == "choice":
        value = trial.suggest_categorical(name, offered(values))
        return value if all(_is_plain(option) for option in values) else ast.literal_eval(value)
    if kind == "uniform":
        return trial.suggest_float(name, values[0], values[1])
    if kind == "loguniform":  # hyperopt's bounds are natural logarithms
        return trial.suggest_float(name, math.exp(values[0]), math.exp(values[1]), log=True)
    low, high, step = values
    return trial.suggest_float(name, low, high, step=step)


def grid_points(space):
    """Every point of an all-``choice`` space, as Optuna's fixed parameters (lists offered as text)."""
    names = list(space)
    options = [offered(space[name][1]) for name in names]
    return [dict(zip(names, point)) for point in itertools.product(*options)]


def make_sampler(name, space, seed=0):
    if name not in SAMPLERS:
        raise ValueError(f"--sampler '{name}' is not one of {list(SAMPLERS)}")
    if name == "grid" and any(kind != "choice" for kind, _ in space.values()):
        raise ValueError("--sampler grid takes 'choice' parameters only: use tpe or random")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # grid trials come from the queue with fixed parameters; the sampler never draws for them
    return optuna.samplers.TPESampler(seed=seed)


class MedianOfBestPruner(optuna.pruners.BasePruner):
    """Stop a trial whose best validation so far is below the median of the finished trials' best over the same
    epochs, once ``n_startup_trials`` have finished and from epoch ``n_warmup_steps + 1`` on.

    A trial's result is its best epoch (the model early stopping keeps), so trials are compared by what each would
    keep at the same budget. Optuna's median pruner sets a trial's best so far against the others' value *at* that
    epoch: where validation peaks early and then falls (a generator on a fixed cloud model), the others' later
    values drop below any trial's early peak and nothing is ever pruned. A finished trial that stopped before
    the epoch counts with its best over all its epochs.
    """

    def __init__(self, n_startup_trials, n_warmup_steps):
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study, trial):
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(finished) < self.n_startup_trials:
            return False
        best = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        others = [best(v for s, v in t.intermediate_values.items() if s <= step) for t in finished if t.intermediate_values]
        if not others:
            return False
        median = statistics.median(others)
        mine = best(trial.intermediate_values.values())
        return mine < median if best is max else mine > median


def make_pruner(name, max_epochs):
    """``median``: Optuna's, stopping a trial whose best validation so far is below the median of earlier trials'
    value at that epoch; ``median-of-best``: :class:`MedianOfBestPruner`, against their best up to that epoch. Both
    once two trials have finished and from a trial's second epoch on (a first epoch says little)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "median-of-best":
        return MedianOfBestPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner '{name}' is not one of {list(PRUNERS)}")


@contextlib.contextmanager
def quiet_heartbeat_warnings():
    """Optuna warns that its heartbeats are experimental and meant for ``Study.optimize``; :func:`work` uses them
    on purpose, in the ask-and-tell loop a grid's queue needs, as ``Study.optimize`` does: nothing for a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def storage_for(url):
    """The study's database, with heartbeats (:data:`HEARTBEAT_S`) that let a resumed search redo the trials
    that were running when their worker stopped."""
    with quiet_heartbeat_warnings():
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": STORAGE_TIMEOUT_S}} if url.startswith("sqlite") else None,
            heartbeat_interval=HEARTBEAT_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
        )


def open_study(storage, study_name, sampler, pruner, direction, grid=None):
    """Create the study (and, for a grid, queue each point once) or, when it exists, join it."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=study_name, sampler=sampler, pruner=pruner, direction=direction
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner)
    for point in grid or ():
        study.enqueue_trial(point)
    return study


@contextlib.contextmanager
def queue_lock(storage_url):
    """Hold the queue while a trial is taken from it. Optuna pops a queued trial with ``SELECT ... FOR UPDATE``,
    which PostgreSQL and MySQL honour and SQLite ignores: two processes on one SQLite file could take the same
    trial. A SQLite study lives on one machine, so a file lock beside it serialises the pops there."""
    prefix = "sqlite:///"
    if not storage_url.startswith(prefix):
        yield
        return
    with open(storage_url[len(prefix) :] + ".queue.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ask_queued(study):
    """The next queued trial, or None when the queue is empty. ``study.ask()`` would start a newly drawn trial
    instead, which a grid must not (its points are all queued); this is ``ask`` without that fallback, on
    Optuna's own queue-popping (atomic where the database locks rows; on SQLite under :func:`queue_lock`)."""
    trial_id = study._pop_waiting_trial_id()  # noqa: SLF001 (Optuna >= 3: the queue half of Study.ask)
    if trial_id is None:
        return None
    study.sampler.before_trial(study, study._storage.get_trial(trial_id))  # noqa: SLF001
    return optuna.trial.Trial(study, trial_id)


def run_trial(study, trial, space, train):
    """Train one trial, reporting each validated epoch, and tell the study how it ended."""
    parameters = {name: suggest(trial, name, kind, values) for name, (kind, values) in space.items()}
    epochs = []

    def report(epoch, valid_score):
        trial.report(valid_score, len(epochs))
        epochs.append(epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation {valid_score:.4f} below the median after epoch {epoch}")

    try:
        result = train(parameters, report, f"trial-{trial.number}")
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("epochs", len(epochs))
        trial.set_user_attr("reason", str(pruned))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except Exception as error:  # one failing trial never stops the study
        trial.set_user_attr("reason", f"{type(error).__name__}: {error}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    trial.set_user_attr("epochs", len(epochs))
    trial.set_user_attr("valid", result["best_valid_result"])
    trial.set_user_attr("test", result["test_result"])
    study.tell(trial, result["best_valid_score"])


def prepare_study(storage_url, study_name, space, sampler_name, pruner, direction):
    """The study, created (its database tables too, and a grid's queue) or joined."""
    grid = grid_points(space) if sampler_name == "grid" else None
    sampler = make_sampler(sampler_name, space, seed=os.getpid())
    return open_study(storage_for(storage_url), study_name, sampler, pruner, direction, grid)


def work(storage_url, study_name, space, train, sampler_name, pruner, n_trials, direction):
    """One worker: take the study's trials until the grid's queue is empty or it holds ``n_trials``."""
    grid = sampler_name == "grid"
    study = prepare_study(storage_url, study_name, space, sampler_name, pruner, direction)
    while True:
        with quiet_heartbeat_warnings():
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial is queued again (grid) or drawn anew
        if grid:
            with queue_lock(storage_url):
                trial = ask_queued(study)
            if trial is None:
                return
        else:
            if len(study.get_trials(deepcopy=False)) >= n_trials:
                return
            with quiet_heartbeat_warnings():
                trial = study.ask()
        with get_heartbeat_thread(trial._trial_id, study._storage):  # noqa: SLF001 (what Study.optimize does)
            run_trial(study, trial, space, train)


def train_trial(parameters, report, name, model=None, dataset=None, config_file_list=None):
    """One trial's training through the plugin's runner, each validated epoch passed to ``report``. Its model
    files go to a folder of its own under ``checkpoint_dir`` (``name``): RecBole names them by model and by the
    second the training started, which two workers can share."""
    from recbole_duet.config import Config
    from recbole_duet.quick_start import run_experiment

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=parameters)
    config["checkpoint_dir"] = os.path.join(config["checkpoint_dir"], name)
    return run_experiment(config, saved=True, epoch_callback=report)["result"]


def search(model, dataset, config_file_list, params_file, storage_url, study_name=None, sampler_name=None,
           pruner_name="median", n_trials=100, workers=1):
    """Run (or join, or resume) the study of the search space in ``params_file`` for ``model`` on ``dataset`` and
    return it, loaded from its storage. The sampler defaults to a grid when every parameter is a ``choice``, the
    study name to ``<model>-<dataset>-<params file name>``; the pruner's budget and the direction come from the
    trials' own config."""
    from recbole_duet.config import Config

    space = read_search_space(params_file)
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list)
    sampler_name = sampler_name or ("grid" if all(kind == "choice" for kind, _ in space.values()) else "tpe")
    study_name = study_name or f"{config['model']}-{config['dataset']}-{os.path.basename(params_file)}"
    train = partial(train_trial, model=model, dataset=dataset, config_file_list=config_file_list)
    run_workers(
        workers, storage_url=storage_url, study_name=study_name, space=space, train=train,
        sampler_name=sampler_name, pruner=make_pruner(pruner_name, config["epochs"]), n_trials=n_trials,
        direction="maximize" if config["valid_metric_bigger"] else "minimize",
    )
    return optuna.load_study(study_name=study_name, storage=storage_for(storage_url))


def run_workers(workers, **kwargs):
    """``workers`` processes on one study (spawned: each builds its own torch and database connection). The study
    is prepared here first, so that the workers never race to create its tables."""
    if workers == 1:
        return work(**kwargs)
    prepare_study(**{key: kwargs[key] for key in ("storage_url", "study_name", "space", "sampler_name", "pruner", "direction")})
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=work, kwargs=kwargs) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [process.exitcode for process in processes if process.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} search workers exited with codes {failed}")


def simplicity(params, space):
    """How far a setting lies from the first value of each ``choice``: the sum of its values' positions in their
    lists. A search-space file lists a choice's simplest value (the default) first; a parameter that is not a
    ``choice`` has no such order and counts 0."""
    steps = 0
    for name, (kind, values) in space.items():
        if kind == "choice" and name in params:
            steps += offered(values).index(params[name])
    return steps


def choose(scored, space, tie_margin=0.0, maximize=True):
    """The index in ``scored`` (``(params, valid score)`` of each complete trial) of the setting a screen keeps.

    This project's rule: a validation margin below the noise is a tie, and a tie keeps the simpler setting. So the
    choice is the simplest (:func:`simplicity`) of the settings less than ``tie_margin`` behind the best, the better
    score among equally simple ones; with no margin, the best. Optuna's own best trial ignores the noise: a grid
    whose top settings differ by less than it would be decided by chance."""
    sign = 1 if maximize else -1
    best = max(sign * score for _, score in scored)

    def tied(score):
        return sign * score == best or round(best - sign * score, 12) < tie_margin

    candidates = [index for index, (_, score) in enumerate(scored) if tied(score)]
    return min(candidates, key=lambda index: (simplicity(scored[index][0], space), -sign * scored[index][1], index))


def chosen_trial(study, space, tie_margin=0.0):
    """The complete trial of ``study`` that :func:`choose` keeps, or None when no trial is complete."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return complete[choose([(t.params, t.value) for t in complete], space, tie_margin, maximize)]


def export_result(study, output_file, space=None, tie_margin=0.0):
    """RecBole's result file: each trial's parameters and its valid and test results (or how it ended), then
    the best trial and, with a ``tie_margin``, the one :func:`choose` keeps, which is returned (else None)."""
    lines = []
    for trial in study.get_trials(deepcopy=False):
        parameters = ", ".join(f"{name}:{value}" for name, value in trial.params.items())
        if trial.state == optuna.trial.TrialState.COMPLETE:
            lines += [parameters, f"  Valid result:\n  {trial.user_attrs['valid']}", f"  Test result:\n  {trial.user_attrs['test']}", ""]
        else:
            lines += [parameters, f"  {trial.state.name.lower()}: {trial.user_attrs.get('reason', '')}", ""]
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    chosen = chosen_trial(study, space, tie_margin) if tie_margin else None
    if complete:
        best = study.best_trial
        lines.append(f"Best params: {', '.join(f'{n}:{v}' for n, v in best.params.items())}")
        lines.append(f"Best valid score: {best.value}")
    if chosen:
        lines.append(
            f"Chosen params (the simplest within {tie_margin} of the best): "
            f"{', '.join(f'{n}:{v}' for n, v in chosen.params.items())}"
        )
        lines.append(f"Chosen valid score: {chosen.value}")
    with open(output_file + ".tmp", "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(output_file + ".tmp", output_file)
    return chosen
