"""The platforms' address forwards the Fleet API and nothing else: the Control API is never reached through it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from crossfed.server.deploy.gateway import create_app, is_fleet_path


class Platform:
    """A caller of the gateway, which stands in front of a SuperLink that records what reaches it."""

    def __init__(self) -> None:
        self.forwarded: list[httpx.Request] = []
        self.app = create_app("127.0.0.1:9", None, transport=httpx.MockTransport(self._superlink))

    def _superlink(self, request: httpx.Request) -> httpx.Response:
        self.forwarded.append(request)
        return httpx.Response(200, content=b"fleet answer", headers={"content-type": "application/protobuf"})

    def post(self, path: str, **kwargs) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://gateway.example") as client:
                return await client.post(path, **kwargs)

        return asyncio.run(call())


@pytest.fixture
def gateway():
    platform = Platform()
    return platform, platform.forwarded


@pytest.mark.parametrize(
    "path",
    ["/v1/control/register-node", "/v1/control/start-run", "/v1/control/list-runs", "/v1/runtime/push-logs", "/"],
)
def test_control_and_runtime_calls_are_refused_and_never_forwarded(gateway, path):
    client, forwarded = gateway
    answer = client.post(path, content=b"x")
    assert answer.status_code == 403
    assert forwarded == []


def test_a_fleet_call_is_forwarded_with_its_body_and_node_auth_headers(gateway):
    client, forwarded = gateway
    answer = client.post(
        "/v1/fleet/pull-messages", content=b"\x01\x02", headers={"x-flwr-signature": "sig", "content-type": "a/b"}
    )
    assert answer.status_code == 200 and answer.content == b"fleet answer"
    (request,) = forwarded
    assert request.url == "https://127.0.0.1:9/v1/fleet/pull-messages"
    assert request.content == b"\x01\x02" and request.headers["x-flwr-signature"] == "sig"
    assert request.headers["host"] == "127.0.0.1:9"


def test_a_path_cannot_climb_out_of_the_fleet_prefix():
    assert is_fleet_path("/v1/fleet/pull-messages")
    assert not is_fleet_path("/v1/fleet/../control/start-run")
    assert not is_fleet_path("/v1/fleetx/pull-messages")


def test_the_gateway_command_names_missing_certificates(tmp_path, capsys):
    from crossfed.shared import cli

    (tmp_path / "ca.crt").write_text("")
    argv = ["gateway", "--listen", "127.0.0.1:9092", "--superlink", "127.0.0.1:9093", "--certs", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "missing server.pem, server.key" in capsys.readouterr().err
    assert cli.main([*argv[:2], "9092", *argv[3:]]) == 2
