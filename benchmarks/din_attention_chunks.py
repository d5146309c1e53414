"""Validation time of DIN under RecBole's sampled protocol with its target attention in one pass and, as the
plugin runs it, by history length in chunks.

Under ``uni100`` a DIN validation runs ``SequenceAttLayer``'s MLP over ``[rows, history, 4 * width]`` for 101
rows per case. When no gradient is kept the plugin runs that layer on each history length's real positions, in
chunks of rows (:mod:`recbole_duet.training.speedups`). This measures the whole validation through RecBole's own
``Trainer.evaluate``, RecBole's single pass against each chunk size, rounds alternating in one process, and checks
that every setting gives the same scores and metrics.

    OMP_NUM_THREADS=1 python -m benchmarks.din_attention_chunks --dataset ml-100k --rounds 3 \\
        --out benchmarks/results/cost-ml-100k/din-attention-chunks
    OMP_NUM_THREADS=1 python -m benchmarks.din_attention_chunks --dataset beauty-time --data-path ../shared/data \\
        --config-files benchmarks/configs/din-uni100.yaml benchmarks/configs/beauty-time.yaml --rounds 2 \\
        --out benchmarks/results/cost-beauty-time/din-attention-by-length

``--model DUET`` measures DUET(DIN) instead. The model is trained ``--epochs`` epochs with the quick suite's
settings first (scores of an untrained DIN tie); every evaluation draws the same negatives (numpy seeded).
"""

import argparse
import functools

from benchmarks.validation_timing import (
    machine,
    parse_timing_arguments,
    time_settings,
    train_for_timing,
    write_and_print,
)
from recbole_duet.training import speedups

CHUNK_ELEMENTS = (1 << 18, 1 << 20, 1 << 22)
ONE_PASS = "one pass"


def use_chunks(elements):
    speedups.ATTENTION_CHUNK_ELEMENTS = elements
    speedups.install_attention_by_history_length()


def chunks_label(setting):
    return setting if setting == ONE_PASS else f"chunks of {int(setting):,} values"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DIN", choices=["DIN", "DUET"], help="DUET: DUET(DIN)")
    args = parse_timing_arguments(parser, "din-uni100.yaml")
    config_dict, run = train_for_timing(args, "DIN")
    trainer, valid_data = run["trainer"], run["data"][1]
    trainer.model.eval()

    settings = {ONE_PASS: speedups.use_recbole_attention}
    settings.update({elements: functools.partial(use_chunks, elements) for elements in CHUNK_ELEMENTS})
    rows = time_settings(trainer, valid_data, settings, args.rounds)
    use_chunks(CHUNK_ELEMENTS[1])
    record = {
        "dataset": args.dataset,
        "model": args.model if args.model == "DIN" else "DUET(DIN)",
        "valid_rows": len(valid_data.uid_list),
        "trained_epochs": run["epochs"],
        "rounds": args.rounds,
        "config": config_dict,
        "machine": machine(),
        "settings": rows,
    }
    write_and_print(args.out, record, record["valid_rows"], "attention", chunks_label)


if __name__ == "__main__":
    main()
