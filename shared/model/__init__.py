"""The four-layer recommender and the one rule that splits it into local and shared parts.

:mod:`.recommender` builds the user tower (local), item tower, interaction and prediction layers
(shared); :mod:`.towers` turns an id plus its features into one vector; :mod:`.sharing` decides,
by parameter name, what may leave a platform - every outgoing message goes through it.
"""
