"""A federation in one process: the coordinator's round loop against the platforms' own handlers.

No Ray and no Flower transport: every message is answered at once, in order, by the same
``crossfed.client.task`` functions and ``crossfed.client.outbox.build_reply`` that a SuperNode runs,
so a test or a profile sees crossfed's own work and nothing else. Pass it to
``crossfed.server.federation.run_federation`` as the grid. Node ``p + 1`` is platform ``p``; each
message gets a fresh ``Context`` (as a SuperNode restarted between messages would), so whatever a
platform keeps between rounds must come from its own directory or its worker's memory.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context, Message, MessageType, RecordDict

from crossfed.client import task
from crossfed.client.outbox import build_reply
from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.keys import PREPARE_MESSAGE_TYPE


class InProcessGrid:
    """The part of Flower's ``Grid`` the round loop uses, answered in process."""

    def __init__(self, config: RunConfig) -> None:
        self.run_config = config.to_flat()
        self.platforms = config.data.num_platforms

    def get_node_ids(self) -> list[int]:
        return [platform + 1 for platform in range(self.platforms)]

    def context(self, node_id: int) -> Context:
        node = {"partition-id": node_id - 1, "num-partitions": self.platforms}
        return Context(run_id=1, node_id=node_id, node_config=node, state=RecordDict(), run_config=self.run_config)

    def send_and_receive(self, messages: Any, *args: Any, **kwargs: Any) -> list[Message]:
        return [self.answer(message) for message in messages]

    def answer(self, message: Message) -> Message:
        context = self.context(message.metadata.dst_node_id)
        kind = message.metadata.message_type
        if kind == PREPARE_MESSAGE_TYPE:
            metrics, private = task.prepare(context)
            return build_reply(message, metrics, private=private)
        if kind == MessageType.TRAIN:
            trainer, metrics, trained = task.train(*task.request_contents(message), context)
            return build_reply(message, metrics, private=trainer.private, model=trainer.model if trained else None)
        metrics, private = task.evaluate(message, context)
        return build_reply(message, metrics, private=private)
