"""evalwatch analysis: object detection (:mod:`analysis.detectors`), rules and the frame pipeline.

Kept import-free so that ``import analysis.x`` stays cheap; import submodules directly.
"""
