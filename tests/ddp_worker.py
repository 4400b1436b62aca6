"""Run under torchrun (2 processes, gloo): the global-batch losses and the DDP-averaged gradients
must equal a single process on the same global batch. Rank 0 prints OK or raises."""

import sys

import open_clip
import torch
import torch.distributed as dist

from sen_train.config import load_config
from sen_train.distributed import init_from_env, world
from sen_train.model import SEN

CAPTIONS = ["a man in a red shirt", "the man in red", "a woman with a black bag", "she carries a black bag",
            "a grey hoodie", "a person in a grey hoodie", "yellow coat and white shoes", "a yellow coat"]


# The comparison is of two summation orders (one 8-sample batch against two 4-sample halves plus an
# all-reduce). In float32 their difference is rounding noise of ~1e-7 relative, which is as large as
# any fixed tolerance and fails on some CPUs. In float64 the noise is ~1e-15, so a relative tolerance of
# 1e-9 separates "equal up to rounding" from any real error (a missed gather or a wrong average shifts
# gradients by O(1) relative) by six orders of magnitude on any machine.
RTOL = 1e-9


def build():
    torch.manual_seed(0)
    # TIR and MLM are per-sample objectives with random masks: they stay local by design
    return SEN(load_config("tiny", ["loss.tir=0"]), num_classes=4).double()


def batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 192, 64, generator=g, dtype=torch.float64)
    return images, open_clip.tokenize(CAPTIONS), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def main() -> int:
    rank, size = init_from_env()
    assert size == 2, "run with torchrun --nproc_per_node 2"
    images, tokens, pids = batch()
    # each rank holds whole identity groups: rank 0 identities 0 and 2, rank 1 identities 1 and 3
    local = [0, 1, 4, 5] if rank == 0 else [2, 3, 6, 7]
    model = build()
    out = model(images[local], tokens[local], pids[local])
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for g in grads.values():  # what DDP does after backward
        dist.all_reduce(g)
        g /= size
    losses = {k: float(v) for k, v in out.items()}
    dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        return 0
    assert world() == (0, 1)
    order = [0, 1, 4, 5, 2, 3, 6, 7]  # the gathered order: rank 0's samples, then rank 1's
    ref_model = build()
    ref = ref_model(images[order], tokens[order], pids[order])
    ref["loss"].backward()
    for k in ("sdm", "id", "triplet", "loss"):
        assert abs(ref[k].item() - losses[k]) <= RTOL * max(1.0, abs(losses[k])), (k, ref[k].item(), losses[k])
    worst = 0.0
    for n, p in ref_model.named_parameters():
        if p.grad is None:
            continue
        assert p.grad.dtype == torch.float64, (n, p.grad.dtype)
        scale = p.grad.abs().max().item()
        diff = (p.grad - grads[n]).abs().max().item()
        worst = max(worst, diff / max(scale, 1e-300))
        assert diff <= RTOL * scale, (n, diff, scale)
    print(f"OK loss {losses['loss']:.6f} worst relative grad diff {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
