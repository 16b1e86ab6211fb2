"""The kinds of canary an audit can draw, named apart from the canaries so the CLI lists them cheaply.

``own-items``: each canary's training items are new catalog items only it rates (detectable).
``random``: existing catalog items drawn at random (their signal drowns among real users).
The name of the audit's result file lives here too, so the sweep's tables read it without
importing the audit's torch code.
"""

from __future__ import annotations

OWN_ITEMS, RANDOM_ITEMS = "own-items", "random"
#: Every kind, the default first.
CANARY_KINDS = (OWN_ITEMS, RANDOM_ITEMS)
#: The audit's results contract, beside the run's ``summary.json``.
AUDIT_FILE = "audit.json"
