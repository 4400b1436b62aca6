"""The person detector's frozen TensorFlow graph as an ONNX model, without TensorFlow or the onnx package.

The SSDLite graph's box predictors use eight ops (Conv2D, DepthwiseConv2dNative, FusedBatchNorm, Relu6,
BiasAdd, Add, Identity, Const). This module reads the frozen GraphDef with message types declared here
(only the fields those ops need, field numbers as in TensorFlow's .proto files), keeps what computes
the twelve predictor outputs from the feature extractor's input, and writes the ONNX model's protobuf
messages the same way (opset 13). The protobuf runtime is onnxruntime's own dependency: nothing is
added to the SDK's install. Measured against TensorFlow's run of the original graph: outputs within
2e-5 on every anchor (tests/sdk/vision/test_ssdlite.py).
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
I64, I32, F32, BYTES, STR, BOOL, MSG = (_F.TYPE_INT64, _F.TYPE_INT32, _F.TYPE_FLOAT, _F.TYPE_BYTES, _F.TYPE_STRING,
                                        _F.TYPE_BOOL, _F.TYPE_MESSAGE)

# (message, [(field, number, type, label, message type)]): TensorFlow's graph.proto, node_def.proto,
# attr_value.proto, tensor.proto and tensor_shape.proto, the fields read here
TF_MESSAGES = [
    ("Dim", [("size", 1, I64, _ONE, None)]),
    ("TensorShapeProto", [("dim", 2, MSG, _MANY, "Dim")]),
    ("TensorProto", [("dtype", 1, I32, _ONE, None), ("tensor_shape", 2, MSG, _ONE, "TensorShapeProto"),
                     ("tensor_content", 4, BYTES, _ONE, None), ("float_val", 5, F32, _MANY, None)]),
    ("ListValue", [("s", 2, BYTES, _MANY, None), ("i", 3, I64, _MANY, None), ("f", 4, F32, _MANY, None)]),
    ("AttrValue", [("list", 1, MSG, _ONE, "ListValue"), ("s", 2, BYTES, _ONE, None), ("i", 3, I64, _ONE, None),
                   ("f", 4, F32, _ONE, None), ("tensor", 8, MSG, _ONE, "TensorProto")]),
    ("AttrEntry", [("key", 1, STR, _ONE, None), ("value", 2, MSG, _ONE, "AttrValue")]),
    ("NodeDef", [("name", 1, STR, _ONE, None), ("op", 2, STR, _ONE, None), ("input", 3, STR, _MANY, None),
                 ("attr", 5, MSG, _MANY, "AttrEntry")]),
    ("GraphDef", [("node", 1, MSG, _MANY, "NodeDef")]),
]
# onnx.proto (IR version 8), the fields written here
ONNX_MESSAGES = [
    ("OperatorSetIdProto", [("domain", 1, STR, _ONE, None), ("version", 2, I64, _ONE, None)]),
    ("TensorProto", [("dims", 1, I64, _MANY, None), ("data_type", 2, I32, _ONE, None), ("name", 8, STR, _ONE, None),
                     ("raw_data", 9, BYTES, _ONE, None)]),
    ("AttributeProto", [("name", 1, STR, _ONE, None), ("f", 2, F32, _ONE, None), ("i", 3, I64, _ONE, None),
                        ("s", 4, BYTES, _ONE, None), ("ints", 8, I64, _MANY, None), ("type", 20, I32, _ONE, None)]),
    ("NodeProto", [("input", 1, STR, _MANY, None), ("output", 2, STR, _MANY, None), ("name", 3, STR, _ONE, None),
                   ("op_type", 4, STR, _ONE, None), ("attribute", 5, MSG, _MANY, "AttributeProto")]),
    ("Dimension", [("dim_value", 1, I64, _ONE, None), ("dim_param", 2, STR, _ONE, None)]),
    ("TensorShapeProto", [("dim", 1, MSG, _MANY, "Dimension")]),
    ("TensorType", [("elem_type", 1, I32, _ONE, None), ("shape", 2, MSG, _ONE, "TensorShapeProto")]),
    ("TypeProto", [("tensor_type", 1, MSG, _ONE, "TensorType")]),
    ("ValueInfoProto", [("name", 1, STR, _ONE, None), ("type", 2, MSG, _ONE, "TypeProto")]),
    ("GraphProto", [("node", 1, MSG, _MANY, "NodeProto"), ("name", 2, STR, _ONE, None),
                    ("initializer", 5, MSG, _MANY, "TensorProto"), ("input", 11, MSG, _MANY, "ValueInfoProto"),
                    ("output", 12, MSG, _MANY, "ValueInfoProto")]),
    ("ModelProto", [("ir_version", 1, I64, _ONE, None), ("producer_name", 2, STR, _ONE, None),
                    ("graph", 7, MSG, _ONE, "GraphProto"), ("opset_import", 8, MSG, _MANY, "OperatorSetIdProto")]),
]
ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_INTS = 1, 2, 3, 7
FLOAT = 1  # TensorFlow's DT_FLOAT and ONNX's TensorProto.FLOAT


def _classes(package: str, messages: list) -> dict:
    """Message classes for `messages`, declared in a private descriptor pool."""
    fd = descriptor_pb2.FileDescriptorProto(name=f"sen_{package}.proto", package=f"sen_{package}", syntax="proto3")
    for name, fields in messages:
        m = fd.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            f = m.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".sen_{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"sen_{package}.{name}"))
            for name, _ in messages}


TF = _classes("tf", TF_MESSAGES)
ONNX = _classes("onnx", ONNX_MESSAGES)


def _tensor(t) -> np.ndarray:
    """A TensorFlow TensorProto's float values as an array of its shape."""
    shape = [d.size for d in t.tensor_shape.dim]
    if t.dtype != FLOAT:
        raise ValueError(f"only float constants are expected, not dtype {t.dtype}")
    values = np.frombuffer(t.tensor_content, np.float32) if t.tensor_content else np.array(t.float_val, np.float32)
    count = int(np.prod(shape)) if shape else 1
    if values.size == 1 and count > 1:  # a constant filled with one value
        values = np.full(count, values[0], np.float32)
    return values.reshape(shape)


def convert(graph_bytes: bytes, input_name: str, outputs: list[str]) -> bytes:
    """The ONNX model (serialized, deterministic) computing `outputs` from `input_name` (NCHW float32).

    Raises:
        ValueError: the graph holds an op between them that is not one of the eight this converter knows.
    """
    graph = TF["GraphDef"]()
    graph.ParseFromString(graph_bytes)
    nodes = {n.name: n for n in graph.node}
    keep, stack = set(), list(outputs)
    while stack:
        name = stack.pop().lstrip("^").split(":")[0]
        if name not in keep:
            keep.add(name)
            stack += [] if name == input_name else list(nodes[name].input)

    def source(name: str) -> str:  # activations reached through Identity nodes
        name = name.split(":")[0]
        while name != input_name and nodes[name].op == "Identity":
            name = nodes[name].input[0].split(":")[0]
        return name

    def const(name: str) -> np.ndarray:
        node = nodes[source(name)]
        if node.op != "Const":
            raise ValueError(f"{name}: a weight should be a constant, not {node.op}")
        return _tensor({e.key: e.value for e in node.attr}["value"].tensor)

    model = ONNX["ModelProto"](ir_version=8, producer_name="sen_infer.vision.tf_to_onnx")
    model.opset_import.add(domain="", version=13)
    g = model.graph
    g.name = "ssdlite"
    for node in graph.node:  # the graph's own order is topological
        if node.name in keep and node.name != input_name and node.op not in ("Const", "Identity"):
            _convert_node(g, node, {e.key: e.value for e in node.attr}, source, const)
    _value_info(g.input.add(), input_name, [1, 3, None, None])
    for name in outputs:
        _value_info(g.output.add(), name, [1, None, None, None])
    return model.SerializeToString(deterministic=True)


def _convert_node(g, node, attrs: dict, source, const) -> None:
    """One TensorFlow node as ONNX nodes and initializers in graph `g`."""
    name, op = node.name, node.op
    x = source(node.input[0])
    if op in ("Conv2D", "DepthwiseConv2dNative"):
        w = const(node.input[1])  # HWIO (Conv2D) or HW,C,multiplier (depthwise)
        if op == "Conv2D":
            weight, group = w.transpose(3, 2, 0, 1), 1
        else:
            weight = w.transpose(2, 3, 0, 1).reshape(w.shape[2] * w.shape[3], 1, w.shape[0], w.shape[1])
            group = w.shape[2]
        same = attrs["padding"].s == b"SAME"  # TensorFlow's SAME pads the extra pixel at the end: SAME_UPPER
        _init(g, f"{name}/W", weight)
        _node(g, "Conv", [x, f"{name}/W"], name, strides=list(attrs["strides"].list.i)[1:3], group=group,
              auto_pad=b"SAME_UPPER" if same else b"VALID")
    elif op == "FusedBatchNorm":
        parts = ["scale", "bias", "mean", "var"]
        for part, value in zip(parts, (const(i) for i in node.input[1:5])):
            _init(g, f"{name}/{part}", value)
        _node(g, "BatchNormalization", [x] + [f"{name}/{p}" for p in parts], name, epsilon=float(attrs["epsilon"].f))
    elif op == "Relu6":
        _init(g, f"{name}/lo", np.float32(0.0))
        _init(g, f"{name}/hi", np.float32(6.0))
        _node(g, "Clip", [x, f"{name}/lo", f"{name}/hi"], name)
    elif op == "BiasAdd":
        _init(g, f"{name}/b", const(node.input[1]).reshape(1, -1, 1, 1))
        _node(g, "Add", [x, f"{name}/b"], name)
    elif op == "Add":
        _node(g, "Add", [source(i) for i in node.input], name)
    else:
        raise ValueError(f"{name}: op {op} is not one the detector's converter knows")


def _node(g, op_type: str, inputs: list[str], name: str, **attributes) -> None:
    n = g.node.add(op_type=op_type, name=name, input=inputs, output=[name])
    for key, value in sorted(attributes.items()):
        a = n.attribute.add(name=key)
        if isinstance(value, list):
            a.type, a.ints[:] = ATTR_INTS, [int(v) for v in value]
        elif isinstance(value, bytes):
            a.type, a.s = ATTR_STRING, value
        elif isinstance(value, float):
            a.type, a.f = ATTR_FLOAT, value
        else:
            a.type, a.i = ATTR_INT, int(value)


def _init(g, name: str, value: np.ndarray) -> None:
    value = np.ascontiguousarray(value, np.float32)
    g.initializer.add(name=name, data_type=FLOAT, dims=list(value.shape), raw_data=value.tobytes())


def _value_info(v, name: str, shape: list) -> None:
    v.name = name
    v.type.tensor_type.elem_type = FLOAT
    for i, size in enumerate(shape):
        d = v.type.tensor_type.shape.dim.add()
        if size is None:
            d.dim_param = f"d{i}"
        else:
            d.dim_value = size
