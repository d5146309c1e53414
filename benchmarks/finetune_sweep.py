"""How strong is the fine-tuning baseline? Re-score one trained DUET checkpoint with several settings.

    python -m benchmarks.finetune_sweep --checkpoint saved/DUET-....pth --lrs 0.003 0.01 0.03 0.1 \\
        --steps 10 --out benchmarks/results/finetune-sweep-ml-100k/sasrec-2020

The checkpoint's own config (dataset, split, seed, backbone) rebuilds the data and the model; each
(``finetune_lr``, ``finetune_steps``) pair is evaluated on the validation and test sets with the fine-tuning
baseline (``model: Finetune`` on the checkpoint, its ``cloud_checkpoint``), next to the checkpoint's ``global`` and
``generated`` scores. Choose the setting on validation, not test.
"""

import argparse
import json
import os
import sys

from recbole_duet.config import Config
from recbole_duet.quick_start import build_model, prepare_experiment
from recbole_duet.training.checkpoint import load_checkpoint
from recbole_duet.training.trainer import get_trainer

REBUILD_KEYS = ("backbone", "seed", "MAX_ITEM_LIST_LENGTH", "eval_args", "metrics", "topk", "valid_metric", "eval_batch_size", "data_path")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1])
    parser.add_argument("--steps", type=int, nargs="+", default=[10])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    checkpoint = load_checkpoint(args.checkpoint)
    saved = json.loads(checkpoint["config"])
    config_dict = {key: saved[key] for key in REBUILD_KEYS if key in saved}
    config_dict["data_path"] = os.path.dirname(saved["data_path"].rstrip("/"))
    config_dict["state"] = "WARNING"
    config = Config(model="DUET", dataset=saved["dataset"], config_dict=config_dict)
    _, (train_data, valid_data, test_data), model = prepare_experiment(config)
    model.load_state_dict(checkpoint["state_dict"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    finetune_config = Config(
        model="Finetune", dataset=saved["dataset"], config_dict={**config_dict, "cloud_checkpoint": args.checkpoint}
    )
    finetune = build_model(finetune_config, train_data._dataset)
    scorers = {"finetune": get_trainer(finetune_config["MODEL_TYPE"], "Finetune")(finetune_config, finetune)}

    rows = []
    settings = [("generated", None, None), ("global", None, None)]
    settings += [("finetune", lr, steps) for steps in args.steps for lr in args.lrs]
    for inference, lr, steps in settings:
        if lr is None:
            model.inference = inference
        else:
            finetune.finetune_lr, finetune.finetune_steps = lr, steps
        scorer = scorers.get(inference, trainer)
        valid = scorer.evaluate(valid_data, load_best_model=False)
        test = scorer.evaluate(test_data, load_best_model=False)
        rows.append({"inference": inference, "finetune_lr": lr, "finetune_steps": steps,
                     "valid": {k: float(v) for k, v in valid.items()}, "test": {k: float(v) for k, v in test.items()}})
        print(f"| {inference} | {lr} | {steps} | {float(valid['ndcg@10']):.4f} | {float(test['ndcg@10']):.4f} |", flush=True)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump({"checkpoint": os.path.basename(args.checkpoint), "backbone": saved["backbone"], "seed": saved["seed"], "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
