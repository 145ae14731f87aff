"""The expected GPU rate of a model on paper: its multiply-accumulates and kernel count read from the ONNX
graph, set against a GPU's datasheet throughput and a per-kernel launch cost.

For ``python -m app.bench --on-paper``: a figure to hold a GPU measurement against, not one. At batch 1 a
small network runs one GPU kernel per fused layer, each too small to fill the GPU, so the time is about
``kernels × launch cost`` plus the run call's fixed cost (copies, synchronisation), not ``FLOPs / peak``;
at large batches it becomes compute bound. The datasheet figures are NVIDIA's dense (no sparsity)
throughputs; the launch cost and efficiency are stated assumptions, printed with the result.
Reads the graph with the ``onnx`` package (``requirements-dev.txt``), not needed by the app itself.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

GPUS: dict[str, dict[str, float]] = {
    "H100 SXM": {"fp32_tflops": 67.0, "tf32_tensor_tflops": 494.7, "fp16_tensor_tflops": 989.4,
                 "memory_tb_s": 3.35},
    "H100 PCIe": {"fp32_tflops": 51.2, "tf32_tensor_tflops": 378.0, "fp16_tensor_tflops": 756.0,
                  "memory_tb_s": 2.0},
}
"""NVIDIA's datasheet figures, dense (half the 'with sparsity' ones)."""
LAUNCH_US = 8.0
"""Assumed cost of one ONNX Runtime CUDA kernel at batch 1: CPU-side dispatch and launch, or a small kernel's
run time, whichever is longer (launches take 3-5 us; ONNX Runtime's per-node overhead adds a few)."""
RUN_OVERHEAD_US = 60.0
"""Assumed fixed cost of one ``session.run`` on CUDA: input copy to the GPU (196 KB at batch 1), output copy
back, stream synchronisation and the Python binding."""
EFFICIENCY = 0.3
"""Assumed fraction of the datasheet throughput a batch reaches in cuDNN convolutions of these sizes."""
_FREE_OPS = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Flatten", "Identity",
             "Slice", "Cast", "ConstantOfShape", "Range"}
"""Ops that, in these graphs, act on shapes or views (run on the CPU or fold away); the kernel count skips them.
A Slice or Concat of activations does cost a kernel, so the count is a slight under-estimate there."""
_FUSED_AFTER_CONV = {"Relu", "Add"}
"""Ops ONNX Runtime's CUDA provider fuses into the Conv before them (``FusedConv``: Conv + Add + Relu)."""


def graph_cost(path: Path, batch: int = 1) -> dict[str, Any]:
    """MACs of convolutions, transposed convolutions and matrix products, and the GPU kernel count, of the model
    at ``path`` for ``batch`` images (the input's batch dimension fixed, shapes inferred)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    for tensor in model.graph.input:
        dims = tensor.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    macs, kernels, by_op = 0, 0, {}
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            w = weights[node.input[1]]
            macs += math.prod(shapes[node.output[0]][1:]) * math.prod(w[1:]) * batch
        elif node.op_type == "ConvTranspose":
            w = weights[node.input[1]]
            macs += math.prod(shapes[node.input[0]][1:]) * math.prod(w[1:]) * batch
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0]) or weights.get(node.input[0])
            b = weights.get(node.input[1]) or shapes.get(node.input[1])
            if a and b:
                macs += math.prod(a) * (b[0] if attrs.get("transB") else b[-1])
        if node.op_type in _FREE_OPS:
            continue
        source = producer.get(node.input[0]) if node.input else None
        if node.op_type in _FUSED_AFTER_CONV and source is not None and source.op_type in ("Conv", "Relu", "Add") \
                and _chain_starts_at_conv(source, producer):
            continue
        kernels += 1
        by_op[node.op_type] = by_op.get(node.op_type, 0) + 1
    return {"model": Path(path).name, "batch": batch, "macs": int(macs), "gmacs": round(macs / 1e9, 3),
            "gpu_kernels": kernels, "kernels_by_op": dict(sorted(by_op.items()))}


def _chain_starts_at_conv(node: Any, producer: dict[str, Any], depth: int = 2) -> bool:
    """Whether ``node`` is a Conv or a Relu/Add already fused into one (at most ``depth`` links back)."""
    while depth >= 0:
        if node.op_type == "Conv":
            return True
        if node.op_type not in _FUSED_AFTER_CONV or not node.input or node.input[0] not in producer:
            return False
        node, depth = producer[node.input[0]], depth - 1
    return False


def expected_rate(cost: dict[str, Any], gpu: str = "H100 SXM", batch_large: int = 32) -> dict[str, Any]:
    """Expected images per second at batch 1 (launch bound) and at ``batch_large`` (compute bound), on paper."""
    spec = GPUS[gpu]
    flops = 2.0 * cost["macs"]
    compute_us = {name: flops / (spec[key] * 1e12) * 1e6
                  for name, key in (("fp32", "fp32_tflops"), ("tf32", "tf32_tensor_tflops"),
                                    ("fp16", "fp16_tensor_tflops"))}
    launch_us = cost["gpu_kernels"] * LAUNCH_US
    batch1_us = max(launch_us, compute_us["fp32"] / EFFICIENCY) + RUN_OVERHEAD_US
    large_us = {name: max(launch_us, batch_large * us / EFFICIENCY) + RUN_OVERHEAD_US
                for name, us in compute_us.items()}
    return {
        "gpu": gpu, "datasheet": spec,
        "assumptions": {"launch_us_per_kernel": LAUNCH_US, "run_overhead_us": RUN_OVERHEAD_US,
                        "efficiency": EFFICIENCY},
        "compute_us_per_image_at_peak": {k: round(v, 2) for k, v in compute_us.items()},
        "batch1": {"launch_us": round(launch_us, 1), "expected_ms": round(batch1_us / 1000, 3),
                   "expected_fps": int(1e6 / batch1_us),
                   "bound": "launch" if launch_us >= compute_us["fp32"] / EFFICIENCY else "compute"},
        f"batch{batch_large}_expected_images_per_s": {k: int(batch_large * 1e6 / v) for k, v in large_us.items()},
    }


def on_paper(models: Path, gpu: str = "H100 SXM") -> dict[str, Any]:
    """``graph_cost`` and ``expected_rate`` of both shipped fp32 models (pose mode's encoder, full mode's model)."""
    from app.core.model_io import MODES

    report: dict[str, Any] = {"note": "on paper, not measured: datasheet throughput and the assumptions below"}
    for mode, (filename, _, _) in MODES.items():
        cost = graph_cost(Path(models) / filename)
        report[mode] = {**cost, **expected_rate(cost, gpu)}
    return report
