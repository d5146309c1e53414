"""Full-ranking speed of DUET(DIN): its own ``full_sort_predict`` against RecBole's fallback.

RecBole evaluates a model without ``full_sort_predict`` by repeating each user's interaction once per item
and calling ``predict`` on every (user, item) pair, so DUET(DIN) would re-generate a device's parameters for
every item. ``DUETDIN.full_sort_predict`` generates them once per device and scores all items in chunks.

    python -m benchmarks.din_full_sort --dataset ml-100k --users 64 --out benchmarks/results/cost-ml-100k/din-full-sort-rank8

Both paths run through RecBole's own ``Trainer._full_sort_batch_eval`` on the same untrained model (speed
does not depend on the weights), the same test users (``--users-per-call`` at a time) and the same
``eval_batch_size`` (user-item pairs per forward pass), side by side in one process; the script also
checks that both give the same scores.
"""

import argparse
import json
import os
import platform
import sys
import time

import torch

from recbole_duet.config import Config
from recbole_duet.quick_start import prepare_experiment
from recbole_duet.training.trainer import get_trainer


def fallback_only(*args, **kwargs):
    raise NotImplementedError  # what RecBole's trainer sees for a model without full_sort_predict


def time_full_ranking(trainer, batches):
    start = time.perf_counter()
    with torch.no_grad():
        scores = [trainer._full_sort_batch_eval(batch)[1] for batch in batches]
    return time.perf_counter() - start, torch.cat(scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--users", type=int, default=64, help="number of test users to rank all items for")
    parser.add_argument("--users-per-call", type=int, default=8, help="users per full-ranking call")
    parser.add_argument("--max-len", type=int, default=20, help="MAX_ITEM_LIST_LENGTH")
    parser.add_argument("--eval-batch-size", type=int, default=4096)
    parser.add_argument("--generator-rank", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    config_dict = {
        "backbone": "DIN",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "eval_batch_size": args.eval_batch_size,
        "generator_rank": args.generator_rank,
        "state": "WARNING",
    }
    config = Config(model="DUET", dataset=args.dataset, config_dict=config_dict)
    _, (_, _, test_data), model = prepare_experiment(config)
    model.eval()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.item_tensor = test_data._dataset.get_item_feature()
    trainer.tot_item_num = test_data._dataset.item_num

    devices = next(iter(test_data))[0][: args.users]
    users = len(devices)
    batches = [(devices[start : start + args.users_per_call], None, None, None) for start in range(0, users, args.users_per_call)]

    own_seconds, own_scores = time_full_ranking(trainer, batches)
    model.full_sort_predict = fallback_only
    fallback_seconds, fallback_scores = time_full_ranking(trainer, batches)
    finite = torch.isfinite(own_scores)
    max_difference = (own_scores[finite] - fallback_scores[finite]).abs().max().item()

    record = {
        "dataset": args.dataset,
        "users": users,
        "items": trainer.tot_item_num,
        "config": config_dict,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "full_sort_predict_s": own_seconds,
        "fallback_predict_s": fallback_seconds,
        "ms_per_user_full_sort_predict": 1000 * own_seconds / users,
        "ms_per_user_fallback": 1000 * fallback_seconds / users,
        "speedup": fallback_seconds / own_seconds,
        "max_score_difference": max_difference,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    print("| path | seconds | ms / user |\n|---|---|---|")
    print(f"| DUETDIN.full_sort_predict | {own_seconds:.2f} | {record['ms_per_user_full_sort_predict']:.1f} |")
    print(f"| RecBole fallback (predict per pair) | {fallback_seconds:.2f} | {record['ms_per_user_fallback']:.1f} |")
    print(f"speed-up {record['speedup']:.2f}x over {users} users x {trainer.tot_item_num} items; "
          f"max |score difference| {max_difference:.2e}")


if __name__ == "__main__":
    main()
