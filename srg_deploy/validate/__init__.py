"""Validation, torch-free: the gates per precision (gates), output comparison and the near-tie rule (compare),
typed failures (failures), per-frame and pooled judgement (verdict), text for people (render), golden reference
files (golden) and sample cases (cases). The runtime, export, the commands and the tests all judge through here."""
