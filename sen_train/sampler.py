"""Identity sampler: every batch holds P identities with k samples each.

SDM, ID and triplet need several samples of an identity and several identities per batch; random
batches rarely give both. Every identity group of an epoch is used (the last batch is topped up
with extra groups of other identities). Batches are a pure function of (seed, epoch), so a run
resumed mid-epoch skips exactly the batches already seen. Identity groups are the unit a distributed split will
hand to ranks.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class IdentityBatchSampler:
    def __init__(self, pids, batch_size: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % k or batch_size < 2 * k:
            raise ValueError(f"batch_size {batch_size} must be a multiple of k={k} holding at least 2 identities")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, p in enumerate(pids):
            self.by_pid[int(p)].append(i)
        self.per_batch = batch_size // k
        if len(self.by_pid) < self.per_batch:
            raise ValueError(f"{len(self.by_pid)} identities cannot fill batches of {self.per_batch} identities; "
                             f"lower batch_size or k_per_id")
        if self.per_batch % world_size:
            raise ValueError(f"{self.per_batch} identities per batch cannot be split over {world_size} processes")
        self.k, self.seed = k, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0  # batches of this epoch already consumed (resume)

    def groups(self, epoch: int) -> list[tuple[int, list[int]]]:
        """(pid, k sample indices) groups; identities with fewer than k samples repeat some."""
        rng = np.random.default_rng([self.seed, epoch])
        out = []
        for pid in sorted(self.by_pid):
            idx = list(rng.permutation(self.by_pid[pid]))
            if len(idx) < self.k:
                idx += list(rng.choice(self.by_pid[pid], self.k - len(idx)))
            out += [(pid, [int(i) for i in idx[j : j + self.k]]) for j in range(0, len(idx) - self.k + 1, self.k)]
        return out

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch, 1])
        pending: dict[int, list[list[int]]] = defaultdict(list)
        for pid, group in self.groups(epoch):
            pending[pid].append(group)
        for lst in pending.values():
            rng.shuffle(lst)
        out = []
        while any(pending.values()):
            avail = sorted(p for p, v in pending.items() if v)
            if len(avail) >= self.per_batch:  # favour identities with many groups left: fewer leftovers
                weights = np.array([len(pending[p]) for p in avail], float)
                chosen = [int(p) for p in rng.choice(avail, self.per_batch, replace=False, p=weights / weights.sum())]
                out.append([i for p in chosen for i in pending[p].pop()])
            else:  # the last groups: fill the batch with extra groups of other identities
                others = sorted(set(self.by_pid) - set(avail))
                extra = [int(p) for p in rng.choice(others, self.per_batch - len(avail), replace=False)]
                batch = [i for p in avail for i in pending[p].pop()]
                for p in extra:
                    batch += [int(i) for i in rng.choice(self.by_pid[p], self.k, replace=len(self.by_pid[p]) < self.k)]
                out.append(batch)
        return out

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def __iter__(self):
        # `skip` is advanced by the consumer (the training loop) per batch it has finished: a
        # DataLoader with workers prefetches ahead, so the sampler cannot know what was consumed.
        for batch in self.batches(self.epoch)[self.skip :]:
            if self.world_size == 1:
                yield batch
            else:  # this rank's whole identity groups of the global batch
                groups = [batch[i : i + self.k] for i in range(0, len(batch), self.k)]
                yield [i for g in groups[self.rank :: self.world_size] for i in g]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "skip": self.skip, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.skip, self.seed = int(state["epoch"]), int(state["skip"]), int(state["seed"])


class ReferenceIdentitySampler(IdentityBatchSampler):
    """The SEN reference's `idrannum` sampler (its RandomIdnumSampler), as a pure function of (seed, epoch).

    Each epoch every identity draws k uniformly from 1..num_instance (the reference: 1 or 2), its
    samples (drawn with replacement when fewer than k) are shuffled and cut into groups of k, an
    incomplete last group dropped. While at least P = batch_size // num_instance identities have
    groups left, P of them are drawn uniformly and each gives its next group; groups left then are
    dropped. The groups, in that order, are cut into batches of batch_size; the last, partial one is
    kept. So a batch holds 1 or 2 samples of most identities, and an identity can appear in two
    consecutive rounds. Single process only (the reference's distributed sampler is another one).
    """

    def __init__(self, pids, batch_size: int, num_instance: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError("sampler=reference runs in one process; use sampler=identity_k to train distributed")
        if batch_size < 2 * num_instance:
            raise ValueError(f"batch_size {batch_size} must hold at least 2 identities of {num_instance}")
        super().__init__(pids, batch_size - batch_size % num_instance, num_instance, seed, rank, world_size)
        self.batch_size = batch_size

    def draws(self, epoch: int) -> list[tuple[int, list[int]]]:
        """(pid, group) in the order the reference would append them to its flat index list."""
        rng = np.random.default_rng([self.seed, epoch, 2])
        chunks: dict[int, list[list[int]]] = {}
        for pid in sorted(self.by_pid):
            k = int(rng.integers(1, self.k + 1))
            idx = self.by_pid[pid]
            idx = list(rng.choice(idx, k, replace=True)) if len(idx) < k else list(rng.permutation(idx))
            chunks[pid] = [[int(i) for i in idx[j : j + k]] for j in range(0, len(idx) - k + 1, k)]
        out, available = [], sorted(p for p, c in chunks.items() if c)
        while len(available) >= self.per_batch:
            for pid in (int(p) for p in rng.choice(available, self.per_batch, replace=False)):
                out.append((pid, chunks[pid].pop(0)))
            available = [p for p in available if chunks[p]]
        return out

    def batches(self, epoch: int) -> list[list[int]]:
        flat = [i for _, group in self.draws(epoch) for i in group]
        return [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]

    def __iter__(self):
        yield from self.batches(self.epoch)[self.skip :]
