"""Measuring privacy instead of only accounting for it: a one-run canary audit and item inference.

``canaries`` draws and injects the audited users, ``capture`` records what a coordinator sees,
``scores`` turns each adversary's view into one score per canary, ``bounds`` turns scores into
an epsilon lower bound (Steinke, Nasr and Jagielski, NeurIPS 2023), and ``runner`` ties one
audited training run together for ``crossfed audit``.
"""
