"""The kinds of canary an audit can draw, named apart from the canaries so the CLI lists them cheaply.

``own-items``: each canary's training items are new catalog items only it rates (detectable).
``random``: existing catalog items drawn at random (their signal drowns among real users).
"""

from __future__ import annotations

OWN_ITEMS, RANDOM_ITEMS = "own-items", "random"
#: Every kind, the default first.
CANARY_KINDS = (OWN_ITEMS, RANDOM_ITEMS)
