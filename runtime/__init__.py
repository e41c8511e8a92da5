"""Backends that run an exported or eager SRGNet, and everything built on them: the frame predictor, the video
pipeline, verification and benchmarks. Installed as `srg_deploy.runtime`."""
