"""Files kept across restarts: each is one class that owns its ``FILE_NAME``, ``save`` and ``load``.

``checked`` is the format they share: atomic, checksummed, and unable to run code when read.
The coordinator's ``Checkpoint`` and ``FinalModel`` are in ``checkpoint``; a platform's
``PlatformState`` in ``platform_state``, its cached ``PrivateCopy`` in ``served_copy`` and its
``FoldIns`` in ``foldins``. Per-user test results are evaluation outputs and live with them
(``crossfed.shared.evaluation.per_user_results``).
"""
