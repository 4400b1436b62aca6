"""export: checkpoint -> engine dir (ONNX towers, TensorRT plans, tokenizer, manifest).

May import sen_train and sen_infer; nothing imports export.
"""
