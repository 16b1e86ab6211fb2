"""How a model is measured, the same way in every mode.

:mod:`.ranking` holds the metrics and the two protocols (sampled negatives, full catalog);
:mod:`.results` the results contract every run writes (``summary.json``); :mod:`.per_user_results`
the per-user hits a paired comparison needs; :mod:`.stats` the bootstrap intervals;
:mod:`.progress` the one line per round every mode logs.
"""
