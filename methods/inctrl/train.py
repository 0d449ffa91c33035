"""InCTRL's training on an auxiliary dataset: balanced batches of queries, each with its own normal prompts.

Official code (mala-lab/InCTRL), in words:

* batches (``datasets/new_utlis.py`` l.29-56): ``steps_per_epoch`` batches per epoch, each the first
  half normal queries and the rest anomalous, each class drawn from an endless stream of shuffled
  passes over its images;
* prompts (``datasets/IC_dataset_new.py`` l.120-130): for every query, ``shot`` normal images of its
  own category drawn without replacement (a normal query may draw itself, as there);
* AdamW, lr 1e-3, betas (0.9, 0.999), torch's default weight decay (``engine_IC.py`` l.188), 10 epochs
  (l.201), the heads in train mode (batch norm on batch statistics).

The draws come from one generator seeded by the cell seed (the official code seeds 10,
``defaults.py`` l.345), so a fit is deterministic for a seed on one machine.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from fsadbench.core.errors import MethodError


def class_stream(indices: Sequence[int], rng: np.random.Generator) -> Iterator[int]:
    """Endless passes over ``indices``, each pass in a fresh random order."""
    while True:
        for i in rng.permutation(np.asarray(indices)):
            yield int(i)


def balanced_batches(labels: Sequence[int], batch_size: int, steps: int,
                     rng: np.random.Generator) -> Iterator[list[int]]:
    """``steps`` batches of indices: ``batch_size // 2`` normals, then the rest anomalous."""
    normal = [i for i, y in enumerate(labels) if not y]
    anomalous = [i for i, y in enumerate(labels) if y]
    if not normal or not anomalous:
        raise MethodError(f"InCTRL trains on normal and anomalous images: the auxiliary set has {len(normal)} "
                          f"normal and {len(anomalous)} anomalous; pair the target with another dataset")
    normals, anomalies = class_stream(normal, rng), class_stream(anomalous, rng)
    n_normal = batch_size // 2
    for _ in range(steps):
        yield [next(normals) for _ in range(n_normal)] + [next(anomalies) for _ in range(batch_size - n_normal)]


def draw_prompts(query: int, categories: Sequence[str], labels: Sequence[int], shots: int,
                 rng: np.random.Generator) -> list[int]:
    """``shots`` distinct normal images of the query's category (the query itself included when normal)."""
    pool = [i for i, (c, y) in enumerate(zip(categories, labels)) if c == categories[query] and not y]
    if len(pool) < shots:
        raise MethodError(f"InCTRL: auxiliary category {categories[query]!r} has {len(pool)} normal image(s), "
                          f"fewer than train_shots={shots}; lower train_shots or train on another dataset")
    return [pool[i] for i in rng.choice(len(pool), size=shots, replace=False)]


def train_heads(head: torch.nn.Module, loss_of: Callable[[list[int], list[list[int]]], torch.Tensor],
                labels: Sequence[int], categories: Sequence[str], *, shots: int, epochs: int, steps: int,
                batch_size: int, lr: float, weight_decay: float, seed: int,
                report: Callable[[int, float], None] | None = None) -> list[float]:
    """The training loop; ``loss_of(queries, prompts)`` is one batch's loss. Returns the mean loss per epoch."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    batches = balanced_batches(labels, batch_size, epochs * steps, rng)
    history = []
    head.train()
    for epoch in range(epochs):
        total = 0.0
        for _ in range(steps):
            queries = next(batches)
            prompts = [draw_prompts(q, categories, labels, shots, rng) for q in queries]
            loss = loss_of(queries, prompts)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        history.append(total / steps)
        if report is not None:
            report(epoch + 1, history[-1])
    head.eval()
    return history
