"""crossfed ClientApp: one per platform. Trains on local data, sends only shared parameters."""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client import task
from client.outbox import build_reply

app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    trainer, metrics = task.train(message, context)
    return build_reply(message, metrics, model=trainer.model)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return build_reply(message, task.evaluate(message, context))
