"""Identity sampler: P identities x k samples per batch, deterministic per epoch, resumable."""

from collections import Counter

import pytest

from sen_train.sampler import IdentityBatchSampler

PIDS = [p for p in range(10) for _ in range(4 + p % 3)]  # 10 identities, 4-6 samples each


def test_batches_hold_p_identities_of_k_samples():
    s = IdentityBatchSampler(PIDS, batch_size=8, k=2, seed=0)
    batches = list(s)
    assert batches and len(batches) == len(s)
    for b in batches:
        assert len(b) == 8
        counts = Counter(PIDS[i] for i in b)
        assert len(counts) == 4 and set(counts.values()) == {2}


def test_epoch_covers_identities_and_reshuffles():
    s = IdentityBatchSampler(PIDS, batch_size=8, k=2, seed=0)
    first = s.batches(0)
    for epoch in range(5):
        batches = s.batches(epoch)
        assert {PIDS[i] for b in batches for i in b} == set(range(10))
        used = Counter(i for b in batches for i in b)
        assert all(used[i] >= 1 for i in range(len(PIDS)) if PIDS[i] % 3 != 1)  # whole groups of k=2
    assert s.batches(0) == first  # deterministic
    assert s.batches(1) != first
    assert IdentityBatchSampler(PIDS, 8, 2, seed=1).batches(0) != first


def test_identities_with_fewer_than_k_samples_repeat():
    s = IdentityBatchSampler([0, 1, 1, 1, 2, 2, 2], batch_size=4, k=2, seed=0)
    for b in s.batches(0):
        assert len(b) == 4


def test_resume_skips_consumed_batches():
    s = IdentityBatchSampler(PIDS, batch_size=8, k=2, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.skip = 2  # the training loop advances skip per finished batch
    state = s.state_dict()
    t = IdentityBatchSampler(PIDS, batch_size=8, k=2, seed=0)
    t.load_state_dict(state)
    assert list(t) == full[2:]


def test_too_few_identities_is_an_error():
    with pytest.raises(ValueError, match="cannot fill batches"):
        IdentityBatchSampler([0, 0, 1, 1], batch_size=8, k=2)
    with pytest.raises(ValueError, match="at least 2 identities"):
        IdentityBatchSampler(PIDS, batch_size=2, k=2)
