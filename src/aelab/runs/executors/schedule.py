"""Scheduling groups on workers: how many at once, what each costs, when to split one.

Shared by every executor: a group is the unit a worker takes; the driver plans the number of
workers, estimates each group's cost, and splits stacked groups while that shortens the parallel
schedule (longest-processing-time first). Pure functions of configs and counts; no I/O.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import torch


def plan_workers(workers: Optional[int], dev: torch.device, n_groups: int, cpus: Optional[int] = None) -> int:
    """Groups trained at once: ``workers``, or one per CPU (``cpus``, default this machine's) on a
    CPU and one on a GPU; never more than there are groups, never fewer than one."""
    if n_groups <= 1:
        return 1
    if workers is None:
        workers = (cpus or os.cpu_count() or 1) if dev.type == "cpu" else 1
    return max(1, min(int(workers), n_groups))


def group_cost(cfgs: Sequence) -> float:
    """Estimated CPU milliseconds of a group's training: what the scheduler balances.

    Per model and step ≈ 0.24 ms of element-wise work on the batch + 3.2 ns per multiply-
    accumulate of one sample (fitted on this project's 2-core reference machine, one thread:
    784→32→784 ≈ 0.40 ms, 784→128→64→32→64→128→784 ≈ 0.95 ms per model-step).
    """
    c = cfgs[0]
    macs = c.model.macs()
    steps = math.ceil((c.data.limit or 60000) / c.train.batch_size) * c.train.epochs
    return (0.24 + 3.2e-6 * macs) * steps * len(cfgs)


def lpt_makespan(costs: Sequence[float], workers: int) -> float:
    """Finish time of the longest-processing-time-first schedule of ``costs`` on ``workers``."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


#: Splitting a stacked group costs its members the shared per-step work (measured ≈ 15%).
SPLIT_PENALTY = 1.1


def balance_groups(groups: list[list], cost, workers: int) -> list[list]:
    """Split stacked groups in two while that shortens the parallel schedule.

    Groups are the unit a worker takes; with fewer (or lopsided) groups than workers some cores
    idle. Greedily split the group whose halving most reduces the estimated makespan (each half
    charged ``SPLIT_PENALTY``, the stacking it gives up), until no split helps by 2 %.
    """
    pieces = [(list(g), cost(g)) for g in groups]
    while True:
        best, best_span = None, lpt_makespan([c for _, c in pieces], workers)
        for k, (g, _) in enumerate(pieces):
            if len(g) < 2:
                continue
            halves = [g[: len(g) // 2], g[len(g) // 2:]]
            trial = [c for j, (_, c) in enumerate(pieces) if j != k] + [cost(h) * SPLIT_PENALTY for h in halves]
            span = lpt_makespan(trial, workers)
            if span < best_span * 0.98:
                best, best_span = (k, halves), span
        if best is None:
            return [g for g, _ in pieces]
        k, halves = best
        pieces = [p for j, p in enumerate(pieces) if j != k] + [(h, cost(h) * SPLIT_PENALTY) for h in halves]


def threads_per_worker(cpus: int, n_workers: int) -> int:
    """Intra-op threads each worker trains with: its share of the cores. Every backend uses this
    rule, because the results of models with image layers depend on the thread count."""
    return max(1, int(cpus) // max(1, int(n_workers)))
