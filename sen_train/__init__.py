"""SEN training: model, losses, data and evaluation.

Importing this package stays cheap (no torch) so that the data tools and metrics can be used
on a machine without the `train` extra; the model parts import torch when they are used.
"""

__version__ = "0.1.0"


def load_model(ckpt_dir, device="cpu"):
    """The SEN model of a checkpoint dir (`model.safetensors` + `config.json`), in eval mode.

    It has `encode_image(x)` (normalised float [B,3,H,W]) and `encode_text(tokens)` (int [B,L]),
    both returning L2-normalised [B,D], and `image_size`, `mean`, `std`.
    """
    from sen_train.checkpoint import load_model as _load

    return _load(ckpt_dir, device)
