"""SEN objectives checked against values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from sen_train import losses as L


def test_sdm_two_identities_by_hand():
    # two identities, one sample each; orthogonal features, perfectly paired
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = img.clone()
    pids = torch.tensor([0, 1])
    tau = 0.5
    # logits per row: [2, 0] -> p = [e^2, 1]/(e^2+1); target q = [1, 0]
    p1 = math.exp(2) / (math.exp(2) + 1)
    p0 = 1 - p1
    eps = 1e-8
    row = p1 * (math.log(p1) - math.log(1 + eps)) + p0 * (math.log(p0) - math.log(eps))
    expected = 2 * row  # both rows equal, mean over rows, two directions
    assert L.sdm_loss(img, txt, pids, tau).item() == pytest.approx(expected, rel=1e-5)


def test_sdm_target_spreads_over_same_identity():
    # three samples, the first two share an identity: target rows are [.5, .5, 0], [.5, .5, 0], [0, 0, 1]
    img = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), dim=-1)
    txt = img.clone()
    pids = torch.tensor([3, 3, 8])
    tau = 0.1
    sim = txt @ img.t() / tau
    target = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    expected = 0.0
    for logits in (sim, sim.t()):
        p = logits.softmax(dim=1)
        expected += (p * (p.log() - (target + 1e-8).log())).sum(dim=1).mean()
    assert L.sdm_loss(img, txt, pids, tau).item() == pytest.approx(expected.item(), rel=1e-4)
    # a better alignment gives a lower loss
    assert L.sdm_loss(img, txt, pids, tau) < L.sdm_loss(img, txt.flip(0), pids, tau)


def test_triplet_uses_hardest_negative_of_another_identity():
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]]), dim=-1)
    txt = F.normalize(torch.tensor([[0.8, 0.6],      # paired with img 0
                                    [1.0, 0.0],      # same identity as sample 0, closest to img 0
                                    [0.9, 0.43589]]), dim=-1)
    pids = torch.tensor([0, 0, 1])
    margin = 0.05
    d = 1 - img @ txt.t()
    # image anchors: negatives are texts of another identity only
    img_terms = [F.relu(margin + d[0, 0] - d[0, 2]), F.relu(margin + d[1, 1] - d[1, 2]),
                 F.relu(margin + d[2, 2] - torch.min(d[2, 0], d[2, 1]))]
    # text anchors: negatives are images of another identity only
    txt_terms = [F.relu(margin + d[0, 0] - d[2, 0]), F.relu(margin + d[1, 1] - d[2, 1]),
                 F.relu(margin + d[2, 2] - torch.min(d[0, 2], d[1, 2]))]
    expected = torch.stack(img_terms).mean() + torch.stack(txt_terms).mean()
    assert expected.item() > 0.1
    # by hand, image anchors: 0.05+0.2-0.1, 0.05+0.2-0.0185, 0.05+0.1113-0.04
    assert torch.stack(img_terms).mean().item() == pytest.approx((0.15 + 0.2315 + 0.1213) / 3, abs=1e-3)
    assert L.triplet_loss(img, txt, pids, margin).item() == pytest.approx(expected.item(), rel=1e-6)
    # text 1 is closer to image 0 than text 2, but shares its identity, so it is not the negative
    assert d[0, 1] < d[0, 2]
    wrong = torch.stack([F.relu(margin + d[0, 0] - d[0, 1])] + img_terms[1:]).mean() + torch.stack(txt_terms).mean()
    assert L.triplet_loss(img, txt, pids, margin).item() != pytest.approx(wrong.item())


def test_triplet_zero_when_separated_by_margin():
    img = torch.eye(2)
    assert L.triplet_loss(img, img.clone(), torch.tensor([0, 1]), 0.05).item() == 0.0


def test_id_loss_is_mean_of_both_modalities():
    logits_i = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logits_t = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    pids = torch.tensor([0, 1])
    expected = (F.cross_entropy(logits_i, pids) + F.cross_entropy(logits_t, pids)) / 2
    assert L.id_loss(logits_i, logits_t, pids).item() == pytest.approx(expected.item())


def test_masked_patch_mse_counts_only_masked_patches():
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [10.0, 10.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third patch is visible: its error is ignored
    assert L.masked_patch_mse(pred, target, mask).item() == pytest.approx((1 + 4) / 2)


def test_single_identity_batch_is_an_error():
    with pytest.raises(L.BatchError, match="only one identity"):
        L.check_identities(torch.tensor([4, 4, 4]))
