"""Two torchrun processes (gloo, CPU) reproduce a single process on the same global batch."""

import json
import os
import socket
import subprocess
import sys

from sen_train.sampler import IdentityBatchSampler

from helpers import ROOT  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_on_the_global_batch():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                        str(ROOT / "tests" / "ddp_worker.py")], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "OK loss" in r.stdout


def test_rank_shares_hold_whole_identity_groups_and_cover_all():
    pids = [p for p in range(12) for _ in range(4)]
    full = IdentityBatchSampler(pids, batch_size=8, k=2, seed=3)
    shares = [IdentityBatchSampler(pids, batch_size=8, k=2, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        for s in (full, *shares):
            s.set_epoch(epoch)
        global_batches = list(full)
        per_rank = [list(s) for s in shares]
        assert len(per_rank[0]) == len(per_rank[1]) == len(global_batches)
        seen = set()
        for step, batch in enumerate(global_batches):
            a, b = per_rank[0][step], per_rank[1][step]
            assert sorted(a + b) == sorted(batch) and len(a) == len(b) == 4
            ids_a, ids_b = {pids[i] for i in a}, {pids[i] for i in b}
            assert not ids_a & ids_b  # no identity group is split across ranks within a step
            seen |= ids_a | ids_b
        assert seen == set(range(12))  # every identity, every epoch


def test_torchrun_training_and_resume_with_two_processes(synth_small, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def torchrun(*args):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                               "-m", "sen_train.train", "--data", str(synth_small), "--out", str(tmp_path / "run"),
                               "--quiet", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)

    r = torchrun("--config", "tiny", "--set", "batch_size=16", "--set", "max_steps=2", "--set", "log_every=1")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "last" / "train_state.json").read_text())
    assert state["progress"]["step"] == 2
    r = torchrun("--resume", "--set", "max_steps=4")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "last" / "train_state.json").read_text())
    assert state["progress"]["step"] == 4 and state["sampler"]["skip"] == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # one writer (rank 0), one record per step
