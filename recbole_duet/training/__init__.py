"""Running a training: RecBole's trainers and the run around them (torch and RecBole).

* :mod:`recbole_duet.training.trainer`: RecBole's trainers with safe checkpoints, distributed on CPU or GPU;
* :mod:`recbole_duet.training.checkpoint`: atomic, ``weights_only``-loadable checkpoints;
* :mod:`recbole_duet.training.state`: the whole training state after every epoch, for exact resumes;
* :mod:`recbole_duet.training.cloud_first`: ``training_order: cloud_first``, a run's two trainings;
* :mod:`recbole_duet.training.starting_model`: a training started from a trained model keeps it when no epoch
  beats it;
* :mod:`recbole_duet.training.distributed`: process groups (gloo on CPU, NCCL on GPU) and DDP wrapping;
* :mod:`recbole_duet.training.threads`: torch's CPU threads balanced against the machine's load;
* :mod:`recbole_duet.training.run_log`: a log file per run, plain-number metrics;
* :mod:`recbole_duet.training.speedups`: RecBole's Transformer activations as fused kernels, its target attention in
  chunks when no gradient is kept;
* :mod:`recbole_duet.training.allocator`: freed tensor memory kept for the next batch (glibc).

The runner (:mod:`recbole_duet.quick_start`) puts them together. This package imports nothing on its own, and
nothing in it imports the runner, the Config or the model classes.
"""
