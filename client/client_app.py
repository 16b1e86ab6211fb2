"""crossfed ClientApp: one per platform. Trains on local data, sends only shared parameters."""

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from client import task
from client.outbox import build_reply


def build_app(overrides: Mapping[str, Any] | None = None, mods: Sequence[Mod] = ()) -> ClientApp:
    """A ClientApp. ``overrides`` stand in for ``run_config``, which the Python simulation API
    leaves empty; ``mods`` wrap every message (secure aggregation, or a test's recorder)."""
    client_app = ClientApp(mods=list(mods))

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        trainer, metrics, trained = task.train(message, context, overrides)
        return build_reply(message, metrics, private=trainer.private, model=trainer.model if trained else None)

    @client_app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        metrics, private = task.evaluate(message, context, overrides)
        return build_reply(message, metrics, private=private)

    return client_app


app = build_app()
