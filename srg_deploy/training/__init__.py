"""Training the heads of a checkpoint on a VG-SGG dataset (needs PyTorch: the `[export]` install profile).

`trainer.train` is the run; `sampling` picks each image's pairs as Scene-Graph-Benchmark does; `features` computes
the frozen trunk/res5 features once per image and caches them; `state` is what `--resume` reads; `curves` draws the
log.
"""
