"""Backbone factory and weight loading: position-embedding resize and every weights format."""

import pytest
import torch
from safetensors.torch import save_file

from sen_train.backbone import (WeightsError, create_clip, infer_grid, load_pretrained, read_state_dict,
                                resize_pos_embed, round_image_size)


def _field(gh, gw, channels=3):
    """A position embedding whose patch part is linear in (row, col): bilinear keeps it exact."""
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32),
                            indexing="ij")
    grid = torch.stack([ys * (c + 1) + 10 * xs for c in range(channels)], dim=-1).reshape(gh * gw, channels)
    return torch.cat([torch.full((1, channels), -7.0), grid])


def test_resize_square_to_person_grid():
    pos = _field(14, 14)
    out = resize_pos_embed(pos, (24, 8))
    assert out.shape == (1 + 24 * 8, 3)
    assert torch.equal(out[0], pos[0])  # class token untouched
    const = torch.cat([torch.zeros(1, 4), torch.full((196, 4), 0.25)])
    assert torch.allclose(resize_pos_embed(const, (24, 8))[1:], torch.full((192, 4), 0.25))


def test_resize_non_square_halves_by_block_means():
    pos = _field(24, 8)
    out = resize_pos_embed(pos, (12, 4), old_grid=(24, 8))[1:].reshape(12, 4, 3)
    src = pos[1:].reshape(24, 8, 3)
    want = src.reshape(12, 2, 4, 2, 3).mean(dim=(1, 3))  # half-pixel bilinear = 2x2 block mean
    assert torch.allclose(out, want, atol=1e-5)


def test_resize_same_grid_is_identity_and_bad_grid_is_an_error():
    pos = _field(24, 8)
    assert resize_pos_embed(pos, (24, 8), old_grid=(24, 8)) is pos
    with pytest.raises(WeightsError, match="not a 10x10 grid"):
        resize_pos_embed(pos, (12, 4), old_grid=(10, 10))


def test_infer_grid():
    assert infer_grid(196, (24, 8)) == (14, 14)
    assert infer_grid(192, (24, 8)) == (24, 8)
    assert infer_grid(48, (24, 8)) == (12, 4)


def test_image_size_rounded_to_patch_multiple():
    assert round_image_size((384, 128), 14) == (378, 126)
    assert round_image_size((384, 128), 16) == (384, 128)
    _, size = create_clip("tiny", (190, 70))
    assert size == (192, 64)


@pytest.fixture(scope="module")
def source_clip():
    torch.manual_seed(1)
    model, _ = create_clip("tiny", (224, 224))  # a 14x14 grid, like OpenAI's 224px checkpoints
    return model


def _assert_loaded(target, source):
    src = source.state_dict()
    for k, v in target.state_dict().items():
        if k != "visual.positional_embedding":
            assert torch.equal(v, src[k]), k
    pos = target.state_dict()["visual.positional_embedding"]
    assert pos.shape == (1 + 12 * 4, 128)
    assert torch.allclose(pos, resize_pos_embed(src["visual.positional_embedding"], (12, 4)))


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict", "wrapped_state_dict", "torchscript"])
def test_load_every_format_with_resize(tmp_path, source_clip, fmt):
    sd = {k: v.contiguous() for k, v in source_clip.state_dict().items()}
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    elif fmt == "state_dict":
        path = tmp_path / "w.pt"
        torch.save(sd, path)
    elif fmt == "wrapped_state_dict":  # DDP-style checkpoints: {"state_dict": {"module.x": ...}}
        path = tmp_path / "w.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    else:  # OpenAI's release format
        path = tmp_path / "ViT-tiny.pt"
        torch.jit.script(source_clip).save(str(path))
    target, _ = create_clip("tiny", (192, 64))
    notes = load_pretrained(target, str(path))
    assert notes == ["resized visual.positional_embedding to grid 12x4"]
    _assert_loaded(target, source_clip)


def test_missing_weights_file(tmp_path):
    target, _ = create_clip("tiny", (192, 64))
    with pytest.raises(WeightsError, match="neither a weights file nor a pretrained tag"):
        load_pretrained(target, str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsError, match="weights file not found"):
        read_state_dict(tmp_path / "nope.safetensors")


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        read_state_dict(path)


def test_incompatible_weights_list_mismatched_keys(tmp_path):
    other, _ = create_clip("small", (192, 64))
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    target, _ = create_clip("tiny", (192, 64))
    with pytest.raises(WeightsError) as err:
        load_pretrained(target, str(path))
    msg = str(err.value)
    assert "do not fit the model" in msg and "shape mismatches" in msg
    assert "token_embedding.weight: file (49408, 256) vs model (49408, 128)" in msg
    assert "unexpected keys" in msg  # small has more layers than tiny


@pytest.mark.parametrize("name,size,grid,dim", [("ViT-S-16", (384, 128), (24, 8), 384),
                                                ("ViT-L-14", (378, 126), (27, 9), 768)])
def test_published_backbones_run_at_person_size(name, size, grid, dim):
    model, got = create_clip(name, (384, 128))
    assert got == size and tuple(model.visual.grid_size) == grid
    with torch.no_grad():
        assert model.encode_image(torch.randn(1, 3, *size)).shape == (1, dim)
