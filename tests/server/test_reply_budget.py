"""The gateway bounds what a platform pushes before the SuperLink and the ServerApp deserialise it (finding 11)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from flwr.proto.fleet_pb2 import PullMessagesRequest, PullMessagesResponse, PushMessagesRequest
from flwr.proto.message_pb2 import Message, PushObjectRequest
from flwr.supercore.date import now
from flwr.supercore.primitives.asymmetric import generate_key_pairs, public_key_to_bytes, sign_message

from crossfed.server.deploy.gateway import create_app
from crossfed.server.deploy.limits import Limits

RUN = 7
HONEST, HOSTILE = 11, 22
CAP = 10_000


def push_object(node: int, size: int, run: int = RUN) -> bytes:
    request = PushObjectRequest(run_id=run, object_id="ab" * 32, object_content=b"\x00" * size)
    request.node.node_id = node
    return request.SerializeToString()


def push_messages(node: int, run: int = RUN) -> bytes:
    request = PushMessagesRequest(messages_list=[Message()])
    request.node.node_id = node
    request.messages_list[0].metadata.run_id = run
    return request.SerializeToString()


def pull(node: int) -> bytes:
    request = PullMessagesRequest()
    request.node.node_id = node
    return request.SerializeToString()


class Key:
    """A SuperNode key pair and the headers Flower's SuperNode authentication signs with it."""

    def __init__(self) -> None:
        self.private, public = generate_key_pairs()
        self.public = public_key_to_bytes(public)

    def headers(self) -> dict[str, str]:
        timestamp = now().isoformat()
        signature = sign_message(self.private, timestamp.encode("ascii"))
        return {
            "flwr-public-key": base64.b64encode(self.public).decode("ascii"),
            "flwr-timestamp": timestamp,
            "flwr-signature": base64.b64encode(signature).decode("ascii"),
        }


class SuperLink:
    """Records what reaches it; a pull hands out a message for ``RUN`` while ``instructions`` are queued."""

    def __init__(self) -> None:
        self.forwarded: list[httpx.Request] = []
        self.instructions = 0
        self.status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.forwarded.append(request)
        answer = PullMessagesResponse()
        if request.url.path.endswith("/pull-messages") and self.instructions:
            self.instructions -= 1
            answer.messages_list.add().metadata.run_id = RUN
        return httpx.Response(self.status, content=answer.SerializeToString())


class Gateway:
    def __init__(self, limits: Limits) -> None:
        self.superlink = SuperLink()
        self.app = create_app("127.0.0.1:9", None, transport=httpx.MockTransport(self.superlink), limits=limits)

    def post(self, path: str, content, headers: dict[str, str] | None = None) -> int:
        async def call() -> int:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://gateway.example") as client:
                answer = await client.post(f"/v1/fleet/{path}", content=content, headers=headers or {})
                return answer.status_code

        return asyncio.run(call())

    def forwarded(self, path: str) -> int:
        return sum(1 for request in self.superlink.forwarded if request.url.path.endswith(path))


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(Limits(max_request_bytes=CAP, max_reply_bytes=CAP))


def test_an_honest_reply_within_the_bounds_is_forwarded_whole(gateway):
    assert gateway.post("push-messages", push_messages(HONEST)) == 200
    assert all(gateway.post("push-object", push_object(HONEST, 2_000)) == 200 for _ in range(4))
    assert gateway.forwarded("push-messages") == 1 and gateway.forwarded("push-object") == 4


def test_a_request_past_the_cap_is_refused_413_and_never_forwarded(gateway):
    assert gateway.post("push-object", push_object(HONEST, CAP)) == 413
    assert gateway.post("get-run", b"\x00" * (CAP + 1)) == 413
    assert gateway.superlink.forwarded == []


def test_a_streamed_body_is_cut_off_once_past_the_cap(gateway):
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:  # no content-length: the gateway must count as it reads
        for index in range(1_000):
            sent.append(index)
            yield b"\x00" * 1_000

    assert gateway.post("push-object", endless()) == 413
    assert gateway.superlink.forwarded == []
    assert len(sent) <= CAP // 1_000 + 2  # reading stopped just past the cap, not at the end of the stream


def test_a_body_declared_past_the_cap_is_refused_before_it_is_read(gateway):
    sent: list[int] = []

    async def large() -> AsyncIterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b"\x00" * 1_000

    assert gateway.post("push-object", large(), {"content-length": str(100_000)}) == 413
    assert sent == [] and gateway.superlink.forwarded == []


def test_the_bytes_of_one_reply_are_bounded_across_its_requests(gateway):
    answers = [gateway.post("push-object", push_object(HONEST, 3_000)) for _ in range(4)]
    assert answers == [200, 200, 200, 413]
    assert gateway.forwarded("push-object") == 3


def test_the_reply_budget_restarts_only_when_a_pull_hands_over_an_instruction(gateway):
    for _ in range(3):
        assert gateway.post("push-object", push_object(HONEST, 3_000)) == 200
    assert gateway.post("pull-messages", pull(HONEST)) == 200  # nothing to hand over: no restart
    assert gateway.post("push-object", push_object(HONEST, 3_000)) == 413
    gateway.superlink.instructions = 1
    assert gateway.post("pull-messages", pull(HONEST)) == 200
    assert gateway.post("push-object", push_object(HONEST, 3_000)) == 200


def test_other_runs_and_other_nodes_have_their_own_budgets_without_authentication(gateway):
    for _ in range(3):
        assert gateway.post("push-object", push_object(HONEST, 3_000)) == 200
    assert gateway.post("push-object", push_object(HONEST, 3_000, run=RUN + 1)) == 200
    assert gateway.post("push-object", push_object(HOSTILE, 3_000)) == 200


def test_a_spoofed_node_id_spends_the_senders_own_budget_not_the_honest_platforms(gateway):
    honest, hostile = Key(), Key()
    for _ in range(3):  # the hostile platform claims the honest platform's node id
        assert gateway.post("push-object", push_object(HONEST, 3_000), hostile.headers()) == 200
    assert gateway.post("push-object", push_object(HONEST, 3_000), hostile.headers()) == 413
    assert all(gateway.post("push-object", push_object(HONEST, 3_000), honest.headers()) == 200 for _ in range(3))


def test_a_signature_that_does_not_verify_is_refused_without_forwarding(gateway):
    honest, hostile = Key(), Key()
    forged = {**hostile.headers(), "flwr-public-key": honest.headers()["flwr-public-key"]}
    assert gateway.post("push-object", push_object(HONEST, 100), forged) == 401
    assert gateway.superlink.forwarded == []


def test_pushes_the_superlink_refuses_do_not_count(gateway):
    gateway.superlink.status = 401  # e.g. a node id that is not the key's, or an unknown run
    assert all(gateway.post("push-object", push_object(HONEST, 3_000)) == 401 for _ in range(5))
    gateway.superlink.status = 200
    assert all(gateway.post("push-object", push_object(HONEST, 3_000)) == 200 for _ in range(3))


def test_the_bounds_for_a_model_leave_room_for_its_secagg_reply():
    limits = Limits.for_model(535_244)
    assert limits.max_reply_bytes == limits.max_request_bytes == 4 * 535_244 + 1024 * 1024
    with pytest.raises(ValueError):
        Limits(max_request_bytes=0)


def test_the_bounds_of_a_gram_subspace_run_admit_its_one_release_and_no_more():
    release = 4 * 3706 * 3707 // 2  # MovieLens-1M: n (n + 1) / 2 float32 entries, 27.5 MB
    limits = Limits.for_release(3706)
    assert limits.max_reply_bytes == Limits.for_model(release).max_reply_bytes
    assert 2 * release < limits.max_reply_bytes < 2 * 2 * release + 2 * 1024 * 1024  # SecAgg+'s int64 fits
    assert Limits.for_release(1682).max_reply_bytes < limits.max_reply_bytes  # it follows the catalog


def test_the_deployment_hands_its_bounds_to_the_gateway(tmp_path):
    from crossfed.server.deploy.deployment import Deployment

    deployment = Deployment(tmp_path, 1, "", lambda i: tmp_path / str(i), limits=Limits(123, 456))
    command = deployment._gateway_command()
    assert command[command.index("--max-request-bytes") + 1] == "123"
    assert command[command.index("--max-reply-bytes") + 1] == "456"


def test_the_gateway_command_refuses_a_bound_that_is_not_positive(tmp_path, capsys):
    from crossfed.shared import cli

    for name in ("ca.crt", "server.pem", "server.key"):
        (tmp_path / name).write_text("")
    argv = ["gateway", "--listen", "127.0.0.1:9092", "--superlink", "127.0.0.1:9093", "--certs", str(tmp_path)]
    assert cli.main([*argv, "--max-reply-bytes", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
