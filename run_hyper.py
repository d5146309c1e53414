"""Hyper-parameter search: ``python run_hyper.py --model=DUET --dataset=ml-100k --params_file hyper.test``."""

from recbole_duet.cli import hyper_main

if __name__ == "__main__":
    hyper_main()
