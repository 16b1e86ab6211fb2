"""crossfed ClientApp: one per platform. Trains on local data, sends only shared parameters."""

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from crossfed.client import subspace, task
from crossfed.client.failures import codes_only
from crossfed.client.outbox import build_reply
from crossfed.client.secure import InsecureRequestError, guarded_secaggplus_mod, is_release, unwrap
from crossfed.shared.protocol.keys import GRAM_RELEASE_QUERY, PREPARE_QUERY, SUBSPACE_TEST_QUERY


def build_app(
    overrides: Mapping[str, Any] | None = None, mods: Sequence[Mod] = (), inner_mods: Sequence[Mod] = ()
) -> ClientApp:
    """A ClientApp. ``overrides`` stand in for ``run_config``, which the Python simulation API
    leaves empty; ``mods`` wrap every message outside secure aggregation (e.g. a test's recorder),
    ``inner_mods`` inside it, where a training reply is still unmasked (a benchmark's hostile
    platform under SecAgg+). The outermost mod turns any failure into an error code
    (:mod:`crossfed.client.failures`)."""
    secure_aggregation = guarded_secaggplus_mod(lambda context: task.platform_config(context, overrides))
    client_app = ClientApp(mods=[codes_only, *mods, secure_aggregation, *inner_mods])

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        secure_request = unwrap(message, task.platform_config(context, overrides))
        if secure_request is not None and is_release(list(secure_request[2].names)):
            metrics, vector = subspace.release(context, overrides)
            return build_reply(message, metrics, private=True, secure=secure_request[2], release=vector)
        arrays, server_round, secure = secure_request or (*task.request_contents(message), None)
        trainer, metrics, trained = task.train(arrays, server_round, context, overrides)
        return build_reply(
            message, metrics, private=trainer.private, model=trainer.model if trained else None, secure=secure
        )

    @client_app.query(PREPARE_QUERY)
    def prepare(message: Message, context: Context) -> Message:
        metrics, private = task.prepare(context, overrides)
        return build_reply(message, metrics, private=private)

    @client_app.query(GRAM_RELEASE_QUERY)
    def gram_release(message: Message, context: Context) -> Message:
        if task.platform_config(context, overrides).secure_aggregation.secagg:
            raise InsecureRequestError(
                "this platform is configured with secagg = true and releases its Gram matrix only under SecAgg+; "
                "the coordinator asked for it in the clear"
            )
        metrics, vector = subspace.release(context, overrides)
        return build_reply(message, metrics, private=True, release=vector)

    @client_app.query(SUBSPACE_TEST_QUERY)
    def subspace_test(message: Message, context: Context) -> Message:
        return build_reply(message, subspace.test(message, context, overrides), private=True)

    @client_app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        metrics, private = task.evaluate(message, context, overrides)
        return build_reply(message, metrics, private=private)

    return client_app


app = build_app()
