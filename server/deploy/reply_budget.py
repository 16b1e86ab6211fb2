"""How many bytes a platform may push into the SuperLink for one reply, counted where the gateway sees them.

Flower 1.42 takes messages of up to 2 GiB (its gRPC limit is hard-coded), and the ServerApp
deserialises a reply before crossfed's screening looks at it. A platform reaches the SuperLink
only through ``crossfed gateway``, which sees each Fleet request first, but a reply is not one
request: it is one ``/v1/fleet/push-messages`` (the message and its object tree) plus one
``/v1/fleet/push-object`` per object (records, arrays, array chunks of at most 5 MiB). So the
gateway counts the bytes a sender pushes for a run between two instructions it receives: the
count restarts only when a ``pull-messages`` answer actually hands the sender a message for that
run, which the sender cannot cause by pulling more often (an empty pull restarts nothing).

Who is counted. Flower's SuperNode authentication sends the node's public key
(``flwr-public-key``) and its signature over a fresh timestamp (``flwr-signature``) on every Fleet
request; the node id and run id in the protobuf body are checked against that key by the SuperLink
only after the gateway forwarded the request. Counting by the body's node id would let a hostile
platform put an honest platform's id in its pushes and use up that platform's budget, so the
honest reply is refused. The gateway therefore verifies the signature itself and counts by the
public key: a sender can spend only the budget of a key it holds. Requests the SuperLink answers
with an error status (its authentication answers 401 for an unregistered key or a node id that
is not the key's) stored nothing and are credited back, so fresh keys leave no counters behind.
The signature is checked, not the timestamp's age (the SuperLink checks that): replaying a
header needs the TLS-protected traffic it travelled in. Without SuperNode authentication there
is no key to count by, and the body's node id is used: spoofable, and said so in the threat model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from flwr.proto.fleet_pb2 import PullMessagesRequest, PullMessagesResponse, PushMessagesRequest
from flwr.proto.message_pb2 import PushObjectRequest
from google.protobuf.message import DecodeError

logger = logging.getLogger("crossfed.deploy.gateway")

#: Fleet paths whose bodies are a reply's bytes.
PUSH_MESSAGES = "/v1/fleet/push-messages"
PUSH_OBJECT = "/v1/fleet/push-object"
PULL_MESSAGES = "/v1/fleet/pull-messages"
#: SuperNode authentication headers (``flwr.supercore.constant``, ``flwr.common.constant``).
PUBLIC_KEY_HEADER = "flwr-public-key"
SIGNATURE_HEADER = "flwr-signature"
TIMESTAMP_HEADER = "flwr-timestamp"


class AuthenticationFailed(ValueError):
    """SuperNode authentication headers are present but do not verify."""


def sender_of(headers: Mapping[str, str], node_id: int | None) -> str | None:
    """Who pays for a request: the verified public key when SuperNode authentication headers are sent,
    else the claimed node id (``None`` when neither is known)."""
    encoded = headers.get(PUBLIC_KEY_HEADER)
    if encoded is None:
        return None if node_id is None else f"node:{node_id}"
    from flwr.supercore.primitives.asymmetric import bytes_to_public_key, verify_signature

    try:
        public_key = base64.b64decode(encoded, validate=True)
        signature = base64.b64decode(headers.get(SIGNATURE_HEADER, ""), validate=True)
        timestamp = headers.get(TIMESTAMP_HEADER, "").encode("ascii")
        valid = verify_signature(bytes_to_public_key(public_key), timestamp, signature)
    except (binascii.Error, ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as error:
        raise AuthenticationFailed("malformed SuperNode authentication headers") from error
    if not valid:
        raise AuthenticationFailed("the SuperNode signature does not verify against its public key")
    return "key:" + hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class Push:
    """A request that carries reply bytes: its claimed node and the runs it pushes into."""

    node_id: int
    run_ids: tuple[int, ...]


def parse_push(path: str, body: bytes) -> Push | None:
    """The node and runs a push names (``None`` for a path that pushes nothing, or an undecodable body,
    which the SuperLink refuses without storing anything)."""
    try:
        if path == PUSH_OBJECT:
            request = PushObjectRequest.FromString(body)
            return Push(request.node.node_id, (request.run_id,))
        if path == PUSH_MESSAGES:
            messages = PushMessagesRequest.FromString(body)
            runs = tuple(sorted({message.metadata.run_id for message in messages.messages_list}))
            return Push(messages.node.node_id, runs)
    except DecodeError:
        return None
    return None


def claimed_node(path: str, body: bytes, push: Push | None) -> int | None:
    """The node id a push or a ``pull-messages`` body claims; ``None`` for any other request."""
    if push is not None:
        return push.node_id
    if path != PULL_MESSAGES:
        return None
    try:
        return PullMessagesRequest.FromString(body).node.node_id
    except DecodeError:
        return None


def delivered_runs(body: bytes) -> set[int]:
    """The runs a ``pull-messages`` answer hands the sender a message for (empty for an empty pull)."""
    try:
        answer = PullMessagesResponse.FromString(body)
    except DecodeError:
        return set()
    return {message.metadata.run_id for message in answer.messages_list}


class ReplyBudgets:
    """Bytes each sender pushed into each run since its last instruction there, against ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._spent: dict[tuple[str, int], int] = {}

    def spent(self, sender: str, run_id: int) -> int:
        return self._spent.get((sender, run_id), 0)

    def charge(self, sender: str, run_ids: Iterable[int], size: int) -> bool:
        """Count ``size`` bytes against every run named; ``False`` (and nothing counted) if one would exceed."""
        keys = [(sender, run_id) for run_id in run_ids]
        if any(self._spent.get(key, 0) + size > self.limit for key in keys):
            return False
        for key in keys:
            self._spent[key] = self._spent.get(key, 0) + size
        return True

    def refund(self, sender: str, run_ids: Iterable[int], size: int) -> None:
        """Take back bytes the SuperLink refused: they were never stored, so they are no part of a reply."""
        for key in [(sender, run_id) for run_id in run_ids]:
            left = self._spent.get(key, 0) - size
            if left > 0:
                self._spent[key] = left
            else:
                self._spent.pop(key, None)

    def restart(self, sender: str, run_ids: Iterable[int]) -> None:
        """A new instruction reached ``sender`` in these runs: its next reply there starts from zero."""
        for run_id in run_ids:
            spent = self._spent.pop((sender, run_id), 0)
            if spent:
                logger.info("%s pushed %d bytes into run %d for its previous reply", sender, spent, run_id)
