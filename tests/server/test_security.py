"""Bearer token, TLS and mutual TLS, health checking, reflection only when asked for."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from onnxprune.errors import InvalidOptionError
from onnxprune.service import load_config
from onnxprune.service.client import Client, RemoteError
from tests.server.conftest import MLP

Code = grpc.StatusCode
TOKEN = "s3cr3t-t0ken"  # noqa: S105 - a test token


def _openssl(*args: str, cwd) -> None:
    command = [shutil.which("openssl"), *args]
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate (EC P-256)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=test ca", cwd=d)  # fmt: skip
    for name, extra in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(extra + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                 "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


def _settings(**files) -> dict:
    config = load_config(**files)
    return {"token": config.token, "tls": config.tls}


def test_token_missing_or_wrong_is_unauthenticated(start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    address = start_server(**_settings(token_file=token_file))
    for token in (None, "wrong", TOKEN + "x", ""):
        with Client(address, token=token) as client, pytest.raises(RemoteError) as caught:
            client.analyze(MLP)
        assert caught.value.code is Code.UNAUTHENTICATED
        assert TOKEN not in str(caught.value)
    with Client(address, token=TOKEN) as client:
        assert client.analyze(MLP).total_params == 50_200
        assert client.list_methods().scores
    with grpc.insecure_channel(address) as channel:  # health needs no token
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_config_refuses_empty_or_missing_token_file(tmp_path):
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(InvalidOptionError, match="empty"):
        load_config(token_file=tmp_path / "empty")
    with pytest.raises(InvalidOptionError, match="cannot be read"):
        load_config(token_file=tmp_path / "missing")
    with pytest.raises(InvalidOptionError, match="both"):
        load_config(tls_cert=tmp_path / "c.pem")
    assert TOKEN not in repr(load_config(token_file=_write(tmp_path / "t", TOKEN)))


def _write(path, text):
    path.write_text(text)
    return path


def test_tls_round_trip(start_server, pki):
    address = start_server(**_settings(tls_cert=pki / "server.pem", tls_key=pki / "server.key"))
    with Client(address, tls_ca=pki / "ca.pem") as client:
        assert client.analyze(MLP).total_params == 50_200
    with Client(address) as plain, pytest.raises(RemoteError) as caught:
        plain.analyze(MLP)
    assert caught.value.code is Code.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate(start_server, pki):
    address = start_server(
        **_settings(
            tls_cert=pki / "server.pem",
            tls_key=pki / "server.key",
            tls_client_ca=pki / "ca.pem",
        )
    )
    with Client(address, tls_ca=pki / "ca.pem") as anonymous, pytest.raises(RemoteError) as caught:
        anonymous.analyze(MLP)
    assert caught.value.code is Code.UNAVAILABLE
    with Client(
        address, tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem", tls_key=pki / "client.key"
    ) as client:
        assert client.analyze(MLP).total_params == 50_200


def test_health_reports_serving(address):
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "onnxprune.v1.PruningService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert caught.value.code() is Code.NOT_FOUND


def _list_services(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return [s.name for s in replies[0].list_services_response.service]


def test_reflection_is_off_by_default_and_on_when_asked(start_server, address):
    with pytest.raises(grpc.RpcError) as caught:
        _list_services(address)
    assert caught.value.code() is Code.UNIMPLEMENTED
    assert "onnxprune.v1.PruningService" in _list_services(start_server(reflection=True))
