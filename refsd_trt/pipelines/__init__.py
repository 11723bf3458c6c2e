"""The two pseudonymization methods, orchestrated over detections: ``InpaintMethod`` (Zwick et al.
2024) and ``RefsdMethod`` (removal, avatar, refinement)."""
