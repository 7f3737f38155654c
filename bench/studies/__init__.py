"""Optuna studies: ablations and sweeps from `studies/*.yaml`.

- `spec`: the YAML study spec -> a validated `StudySpec` (search space, objective, sampler, pruner, storage).
- `run`: the spec -> an Optuna study; trials are bench runs; workers on one machine, other nodes or Slurm.
- `storage`: journal / RDB storages, trial ownership and heartbeats, stale-trial recovery.
- `report`: the ablation table and figures of a study (same renderer and plot helpers as `bench table`/`plot`).
"""
