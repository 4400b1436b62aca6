"""Torch -> ONNX for the two towers, with dynamic batch (and text length) and stable I/O names."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

MAX_BATCH = 4096


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for v in list(graph.output) + list(graph.input) + list(graph.value_info):
        if v.name == old:
            v.name = new


def export_graph(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str,
                 dynamic_length: bool, opset: int) -> None:
    """Export `module` (one input, one output named `embedding`) with torch's dynamo exporter."""
    import onnx

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dims = {0: batch}
    if dynamic_length:
        dims[1] = torch.export.Dim("length", min=1, max=example.shape[1])
    if example.shape[0] < 2:
        raise ValueError("trace with batch >= 2: a batch of 1 would be specialised into the graph")
    tmp_out = "sen_output__"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), (example,), None, input_names=[input_name],
                                    output_names=[tmp_out], opset_version=opset, dynamo=True,
                                    dynamic_shapes=({k: v for k, v in dims.items()},), verbose=False,
                                    optimize=True)
    model = program.model_proto
    graph = model.graph
    names = {n for node in graph.node for n in node.output}
    if "embedding" in names:  # the exporter names values after ops (aten.embedding -> "embedding")
        _rename_value(graph, "embedding", "embedding__internal")
    _rename_value(graph, tmp_out, "embedding")
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
