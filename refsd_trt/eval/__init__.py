"""``refsd-trt eval``: what an anonymization is for, measured with models the pipeline never uses.

Privacy (face identity, face re-identification, an appearance proxy), utility (people and pose
kept, background kept) and a realism proxy (faces still detected), for every preset present and
the classical baselines, all from the same detections, in one run.
"""
