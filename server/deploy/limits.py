"""The gateway's two byte bounds and the rule that derives them from a model, importable without Flower.

``crossfed gateway`` builds its parser from these defaults, and building a parser imports no
torch, Flower or Ray; :mod:`crossfed.server.deploy.reply_budget` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
#: One request's body when nothing better is known: Flower cuts arrays into chunks of 5 MiB, and a
#: SecAgg+ masked vector (one record holding every parameter as int64) of a model with up to
#: 8 M shared float32 parameters still fits.
DEFAULT_MAX_REQUEST_BYTES = 64 * MIB
#: One reply when nothing better is known: a SecAgg+ reply of up to 32 M shared float32 parameters.
DEFAULT_MAX_REPLY_BYTES = 256 * MIB
#: A reply carries the shared arrays once (plain: float32) or their int64 masked form (SecAgg+,
#: twice the bytes); twice that again is headroom for records, object trees and protobuf framing.
REPLY_MARGIN = 4
#: Metrics, SecAgg+ key and share exchanges and protobuf framing, whatever the model's size.
REPLY_OVERHEAD_BYTES = 1 * MIB


@dataclass(frozen=True)
class Limits:
    """The gateway's two bounds, in bytes: one request's body, and one sender's reply to one instruction."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES

    def __post_init__(self) -> None:
        if self.max_request_bytes < 1 or self.max_reply_bytes < 1:
            raise ValueError(f"byte limits must be positive: {self}")

    @classmethod
    def for_model(cls, shared_bytes: int) -> Limits:
        """Bounds no honest reply reaches for a model whose shared arrays take ``shared_bytes``."""
        bound = REPLY_MARGIN * shared_bytes + REPLY_OVERHEAD_BYTES
        return cls(max_request_bytes=bound, max_reply_bytes=bound)

    @classmethod
    def for_release(cls, num_items: int) -> Limits:
        """Bounds no honest reply reaches in a ``gram-subspace`` run over ``num_items`` items.

        Its largest reply is the one Gram release: ``n (n + 1) / 2`` floats (float32 in the clear,
        int64 once SecAgg+ masks it, which :meth:`for_model`'s margin already covers).
        """
        return cls.for_model(4 * num_items * (num_items + 1) // 2)
