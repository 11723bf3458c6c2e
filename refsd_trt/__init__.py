"""refsd-trt: pseudonymize people in images with RefSD or diffusion inpainting on fast engines."""

__version__ = "0.1.0"
