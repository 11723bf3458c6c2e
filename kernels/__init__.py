"""Device compositing ops (installed as ``refsd_trt.kernels``)."""

if __name__ != "refsd_trt.kernels":  # imported as a top-level module from a source checkout
    raise ImportError("refsd-trt's kernels/ installs as refsd_trt.kernels; it is not a top-level 'kernels' module")
