"""Where a DUET training step spends its time: forward + backward CPU time of each part on one batch.

    OMP_NUM_THREADS=1 python -m benchmarks.duet_step_profile --backbone GRU4Rec --out benchmarks/results/cost-ml-100k/step-profile-gru4rec

Each part runs forward and backward on the same ml-100k training batch (2,048 samples, histories of 20) in
isolation, with the backbone's output detached where the part does not include the backbone; the median CPU
time of ``--repeats`` runs is reported (CPU time of this one-thread process, which other jobs on a shared
machine disturb little). Parts do not add up exactly to the whole step: the whole also pays autograd's
bookkeeping across them.
"""

import argparse
import json
import os
import statistics
import sys
import time

from recbole_duet.config import Config
from recbole_duet.model.layers import realtime_window
from recbole_duet.quick_start import prepare_experiment


def cpu_ms(loss_of, repeats):
    """Median CPU milliseconds of ``loss_of().backward()``."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        loss_of().backward()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def parts(model, batch):
    """``{part: callable returning a scalar loss}`` for one batch."""
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    representation, states = model.represent(item_seq, item_seq_len)
    representation = representation.detach().requires_grad_()
    window_ids, window_len = realtime_window(item_seq, item_seq_len, model.realtime_window_size)
    source = model.backbone.item_embedding(window_ids) if states is None else realtime_window(states, item_seq_len, model.realtime_window_size)[0]
    window = source.detach().requires_grad_()
    result = {
        "backbone + its loss": lambda: model._recommendation_loss(model.backbone(item_seq, item_seq_len), batch),
        "one CE loss over all items": lambda: model._recommendation_loss(representation, batch),
        "head encoder": lambda: model.generator.encode(window, window_len).sum(),
        "generator (encoder + branches)": lambda: sum(w.core.sum() + b.sum() for w, b in model.generator(window, window_len)),
        "global dynamic layers": lambda: model.classifier(representation).sum(),
        "generated dynamic layers (incl. generation)": lambda: model.classifier(representation, model._generate(window, window_len)).sum(),
        "whole DUET step (L_ppg + L_umn)": lambda: sum(model.calculate_loss(batch)),
    }
    if model.stabilizer is not None:
        result["stable weight adapter"] = lambda: sum(gate.sum() for gate in model.stabilizer(window, window_len))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="GRU4Rec")
    parser.add_argument("--generator-input", default="window")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    # umn_weight 1 (the default, pinned here): the whole step includes the UMN's pass, so every part DUET can add
    # is itemised (at 0 that pass is skipped). ppg_scope 'all' (pinned; SASRec's default is 'generator'): L_ppg's
    # backward runs through the backbone, the costlier step, as in the committed profiles.
    settings = {"backbone": args.backbone, "generator_input": args.generator_input, "MAX_ITEM_LIST_LENGTH": 20}
    settings.update(umn_weight=1.0, ppg_scope="all")
    settings.update(train_batch_size=2048, state="WARNING", seed=2020)
    config = Config(model="DUET", dataset="ml-100k", config_dict=settings)
    _, (train_data, _, _), model = prepare_experiment(config)
    model.train()
    batch = next(iter(train_data))
    timings = {name: cpu_ms(loss_of, args.repeats) for name, loss_of in parts(model, batch).items()}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump({"settings": settings, "repeats": args.repeats, "cpu_ms": timings}, file, indent=2)
    print(f"DUET({args.backbone}), generator_input={args.generator_input}, one batch of {len(batch)}")
    print("| part (forward + backward) | CPU ms |\n|---|---|")
    for name, value in timings.items():
        print(f"| {name} | {value:.0f} |")


if __name__ == "__main__":
    main()
