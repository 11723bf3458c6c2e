"""Benchmarks: per-stage latency and throughput against a plain diffusers + ultralytics baseline (installed as ``refsd_trt.bench``)."""
