"""Serving on the platform: top-K recommendations, explanations, fold-in and cold start.

It lives on the platform because the user tower never leaves it: a recommendation needs the
platform's own user vectors next to the global item side the coordinator distributed.
:mod:`.service` is the entry point; :mod:`.scoring` ranks the whole catalog for one user,
:mod:`.foldin` updates a user's vector from new interactions, :mod:`.cold_start` serves users
with no history, :mod:`.explanations` says why an item was chosen.
"""
