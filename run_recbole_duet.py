"""Train and test DUET or any RecBole model: ``python run_recbole_duet.py --model=DUET --dataset=ml-100k``."""

from recbole_duet.cli import main

if __name__ == "__main__":
    main()
