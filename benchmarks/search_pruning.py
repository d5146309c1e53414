"""Does pruning buy the same decision for fewer epochs? One grid searched twice on Optuna, trial for trial the
same trainings, once with every trial trained to its early stop (``--pruner none``: the hand-run screen) and once
with a pruner stopping trials whose validation falls behind.

    python -m benchmarks.search_pruning --config-files benchmarks/configs/search-beauty-time-gru4rec.yaml \\
        --params-file benchmarks/configs/search-beauty-time-gru4rec.hyper --dataset beauty-time \\
        --out benchmarks/results/search-pruning-beauty-time

The studies live in ``<out>/studies.db`` (SQLite), one worker each, run one after the other on the same machine;
a study finished before is read back, not run again. ``--replay`` pruners are not trained but replayed on the
unpruned study's curves: a trial trains the same epochs whatever stops it later (one seed, one machine), so a
pruner's decisions on them are the ones it would make in a real run; their seconds are the unpruned trials'
seconds in proportion to the epochs kept. Output: ``<out>/search_pruning.json`` (every trial's parameters, end,
epochs, seconds and validation curve; each study's totals and chosen setting) and ``search_pruning.md``.
"""

import argparse
import os
from functools import partial

import optuna
import torch

from benchmarks.run import machine_description, write_json_atomically
from recbole_duet.config import Config
from recbole_duet.search import optuna_search
from recbole_duet.search.choices import PRUNERS


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-files", nargs="+", required=True, help="the settings every trial keeps")
    parser.add_argument("--params-file", required=True, help="the grid, in RecBole's search-space format")
    parser.add_argument("--model", default="DUET")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--pruners", nargs="+", default=["none", "median"], choices=PRUNERS)
    parser.add_argument(
        "--replay", nargs="*", default=[], choices=PRUNERS, help="pruners replayed on the unpruned curves"
    )
    parser.add_argument(
        "--tie-margin", type=float, default=0.0,
        help="a study keeps the simplest setting less than this behind its best on validation (default: the best)",
    )
    parser.add_argument("--out", required=True)
    return parser


def trial_row(trial):
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {
        "number": trial.number,
        "params": trial.params,
        "state": trial.state.name.lower(),
        "epochs": trial.user_attrs.get("epochs"),
        "seconds": round(seconds, 1),
        # Optuna gives a pruned trial its last reported value; its best is only known for a trial that finished
        "best_valid": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
        "valid_curve": [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)],
        "reason": trial.user_attrs.get("reason"),
    }


def summarize(rows, choice):
    """``rows`` (one per finished trial of a study) with their totals and the setting the study chose:
    ``choice`` (:func:`optuna_search.choose` with the grid and the tie margin) of its complete trials."""
    complete = [row for row in rows if row["state"] == "complete"]
    chosen = complete[choice([(row["params"], row["best_valid"]) for row in complete])] if complete else None
    return {
        "trials": rows,
        "epochs": sum(row["epochs"] or 0 for row in rows),
        "seconds": round(sum(row["seconds"] for row in rows), 1),
        "chosen": chosen and chosen["params"],
        "chosen_valid": chosen and chosen["best_valid"],
    }


def study_summary(study, choice):
    """Every finished trial of ``study`` with its totals and the setting it chose (see :func:`summarize`)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    return summarize([trial_row(t) for t in sorted(trials, key=lambda t: t.number)], choice)


def replay(name, pruner, unpruned, direction, choice):
    """What ``pruner`` makes of the unpruned study's trials, in their order: each trial's curve reported epoch by
    epoch until the pruner stops it. Returns a study summary like :func:`study_summary`'s. The study is named
    ``replay-<name>``: Hyperband assigns trials to brackets by the study's name."""
    study = optuna.create_study(study_name=f"replay-{name}", direction=direction, pruner=pruner)
    best = max if direction == "maximize" else min
    rows = []
    for reference in unpruned["trials"]:
        trial = study.ask()
        curve = reference["valid_curve"]
        pruned = False
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch - 1)
            pruned = trial.should_prune()  # as run_trial asks after every epoch, the last one too
            if pruned:
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, best(curve))
        rows.append({
            **reference,
            "state": "pruned" if pruned else "complete",
            "epochs": epoch,
            "seconds": round(reference["seconds"] * epoch / len(curve), 1),
            "best_valid": None if pruned else best(curve),
            "valid_curve": curve[:epoch],
            "reason": "replayed" if pruned else None,
        })
    return {**summarize(rows, choice), "replayed": True}


def comparison(summaries, reference="none"):
    """Each study against the unpruned one: the share of its epochs and seconds, and whether it chose alike."""
    base = summaries[reference]
    return {
        name: {
            "epochs_ratio": round(s["epochs"] / base["epochs"], 3),
            "seconds_ratio": round(s["seconds"] / base["seconds"], 3),
            "same_choice": s["chosen"] == base["chosen"],
        }
        for name, s in summaries.items()
        if name != reference
    }


def choice_rule(tie_margin):
    if not tie_margin:
        return "A study chooses its best complete trial on validation."
    return (
        f"A study chooses as this project's screens do: a validation margin under {tie_margin} is a tie, and a tie "
        "keeps the simpler setting (the fewest steps from each parameter's first value in the grid file); "
        "a pruned trial is never chosen."
    )


def markdown(result):
    lines = [
        f"# Pruning on one grid: {result['dataset']}, {result['model']}",
        "",
        f"Machine: {result['machine']}. Trials keep `{' '.join(result['config_files'])}`; the grid is "
        f"`{result['params_file']}`. Generated by `python -m benchmarks.search_pruning`.",
        "",
        choice_rule(result.get("tie_margin", 0.0)),
        "",
        "| pruner | trials complete / pruned | epochs | seconds | chosen setting (valid) | epochs, seconds vs none |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["studies"].items():
        states = [row["state"] for row in s["trials"]]
        chosen = ", ".join(f"{k} {v}" for k, v in (s["chosen"] or {}).items())
        ratios = result["comparison"].get(name)
        against = "–" if ratios is None else f"{ratios['epochs_ratio']:.2f}, {ratios['seconds_ratio']:.2f}" + (
            "" if ratios["same_choice"] else " (another choice)"
        )
        lines.append(
            f"| {name} | {states.count('complete')} / {states.count('pruned')} | {s['epochs']} | {s['seconds']:.0f} | "
            f"{chosen or '–'} ({'–' if s['chosen_valid'] is None else format(s['chosen_valid'], '.4f')}) | {against} |"
        )
    if any(s.get("replayed") for s in result["studies"].values()):
        lines += ["", "A replayed pruner was not trained but replayed on the unpruned trials' curves; its seconds are "
                  "theirs in proportion to the epochs it kept."]
    lines += ["", "Each trial (its validation curve is in `search_pruning.json`):", ""]
    lines += ["| pruner | trial | setting | end | epochs | seconds | best valid |", "|---|---|---|---|---|---|---|"]
    for name, s in result["studies"].items():
        for row in s["trials"]:
            setting = ", ".join(f"{k} {v}" for k, v in row["params"].items())
            best = "–" if row["best_valid"] is None else f"{row['best_valid']:.4f}"
            lines.append(f"| {name} | {row['number']} | {setting} | {row['state']} | {row['epochs']} | {row['seconds']:.0f} | {best} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    storage = f"sqlite:///{os.path.join(args.out, 'studies.db')}"
    config = Config(model=args.model, dataset=args.dataset, config_file_list=args.config_files)
    direction = "maximize" if config["valid_metric_bigger"] else "minimize"
    choice = partial(
        optuna_search.choose, space=optuna_search.read_search_space(args.params_file), tie_margin=args.tie_margin,
        maximize=direction == "maximize",
    )
    summaries = {}
    for pruner in args.pruners:
        study = optuna_search.search(
            args.model, args.dataset, args.config_files, args.params_file, storage,
            study_name=f"pruner-{pruner}", pruner_name=pruner,
        )
        summaries[pruner] = study_summary(study, choice)
    for pruner in args.replay:
        summaries[f"{pruner} (replayed)"] = replay(
            pruner, optuna_search.make_pruner(pruner, config["epochs"]), summaries["none"], direction, choice
        )
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "config_files": args.config_files,
        "params_file": args.params_file,
        "tie_margin": args.tie_margin,
        "machine": machine_description("cpu"),
        "studies": summaries,
        "comparison": comparison(summaries) if "none" in summaries else {},
    }
    write_json_atomically(os.path.join(args.out, "search_pruning.json"), result)
    with open(os.path.join(args.out, "search_pruning.md"), "w", encoding="utf-8") as file:
        file.write(markdown(result))


if __name__ == "__main__":
    main()
