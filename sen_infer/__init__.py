"""sen_infer: the torch-free deployment SDK (tokenizer + onnxruntime/TensorRT + usearch + SQLite + OpenCV).

Import rule: nothing under sen_infer imports torch, open_clip, sen_train or export.
"""

__version__ = "0.1.0"
