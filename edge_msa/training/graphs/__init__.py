"""Graphs TensorRT can take, made from the shipped dynamically quantised graphs.

The text and fusion models ship as dynamic INT8 (``MatMulInteger`` after
``DynamicQuantizeLinear``): the fastest form on a CPU, but TensorRT has no
such nodes, so on a GPU those pieces would fall back to the CPU. The
pre-quantisation FP32 weights are not kept, and retraining takes hours, so:

1. :mod:`.dequantize` recovers an FP32 graph from the shipped one: each
   ``MatMulInteger`` becomes a plain ``MatMul`` against its dequantised
   weight ``(w - zero_point) * scale``. It is the shipped INT8 weights in
   FP32, not the training weights; it differs from the shipped graph only by
   the activation quantisation.
2. :mod:`.convert` makes from it a static INT8 QDQ graph (ONNX Runtime
   ``quantize_static``, symmetric INT8 as TensorRT wants, activations
   calibrated on training sentences in ``calibration/``) and an FP16 graph.
3. :mod:`.measure` scores each on MOSI dev and MOSEI valid against the FP32
   graph; :mod:`.build` keeps the better of the two by those numbers and
   records them in the model's manifest (``tensorrt``).

``scripts/build_trt_graphs.py`` runs it; ``docs/tensorrt.md`` has the numbers.
"""
