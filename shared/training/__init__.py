"""Local training without privacy: batches, losses, negative sampling, seeds and the private copy.

Differential privacy (:mod:`crossfed.shared.privacy`) builds on these pieces, and the platform's
trainer (:mod:`crossfed.shared.trainer`) combines both, so every mode trains with the same code.
"""
