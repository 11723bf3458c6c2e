"""Model contracts, ONNX export and engine builds (installed as ``refsd_trt.export``).

specs            one declarative ModelSpec per model kind, and the wrappers that export/run it
sources          which component of which checkpoint is which kind, how to load and hash it
formats          the export table (onnx, onnx-fp16, tensorrt, tensorrt-fp16) and ``export()``
torch_to_onnx    tracing; onnx_cleanup: onnxslim; fp16: conversion; onnx_files: 2 GB-safe I/O
validation       onnxruntime-CPU against torch fp32, at a stated tolerance
artifacts        content keys, manifests, atomic publication, corruption detection
tensorrt_build   strongly typed TensorRT builds, timing cache, refit (GPU machines only)
cli              ``refsd-trt export`` and ``refsd-trt build``

Importing this package stays light: heavy or optional tools load inside the functions using them.
"""
