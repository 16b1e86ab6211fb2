"""crossfed ClientApp: one per platform. Trains on local data, sends only shared parameters."""

from collections.abc import Sequence

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from client import task
from client.outbox import build_reply


def build_app(mods: Sequence[Mod] = ()) -> ClientApp:
    """A ClientApp; ``mods`` wrap every message (secure aggregation, or a test's recorder)."""
    client_app = ClientApp(mods=list(mods))

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        trainer, metrics, trained = task.train(message, context)
        return build_reply(message, metrics, model=trainer.model if trained else None)

    @client_app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return build_reply(message, task.evaluate(message, context))

    return client_app


app = build_app()
