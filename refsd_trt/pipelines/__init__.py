"""The pseudonymization methods, orchestrated over detections: ``InpaintMethod`` (Zwick et al. 2024),
``RefsdMethod`` (removal, avatar, refinement) and ``LiteMethod`` (classical removal and an avatar, no
diffusion), all on the ``CropMethod`` contract."""
