"""Launchers of a run matrix: every (method, seed) of `bench run` as its own process.

- in this process, one after the other (the default);
- `pool.py`: a local process pool over the devices of one machine (`--workers N --devices 0,1`);
- `slurm.py`: a Slurm job array through submitit (`--launcher slurm`), requeued on preemption or timeout.

Each run is the same `python -m bench.cli run --methods M --seeds S ...` command (`matrix.py`), so its
checkpoints and metrics are bitwise identical however it was launched (same machine, same thread count).
"""
