"""Bearer token, TLS and mutual TLS (and what a mismatch says), health checking, reflection."""

from __future__ import annotations

import shutil
import socket
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from onnxprune.cli import main
from onnxprune.errors import CallRefusedError, ConnectionFailedError, InvalidOptionError
from onnxprune.service import load_config
from onnxprune.service.client import Client
from tests.server.conftest import MLP

Code = grpc.StatusCode
TOKEN = "s3cr3t-t0ken"  # noqa: S105 - a test token


def _openssl(*args: str, cwd) -> None:
    command = [shutil.which("openssl"), *args]
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate and another CA
    that signed neither (EC P-256)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other_ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1",
                 "-subj", f"/CN={ca}", cwd=d)  # fmt: skip
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
        with Client(address, token=token) as client, pytest.raises(CallRefusedError) as caught:
            client.analyze(MLP)
        assert caught.value.status == "UNAUTHENTICATED"
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
    with Client(address) as plain, pytest.raises(ConnectionFailedError) as caught:
        plain.analyze(MLP)
    assert caught.value.status == "UNAVAILABLE"


def test_mutual_tls_needs_a_client_certificate(start_server, pki):
    address = start_server(
        **_settings(
            tls_cert=pki / "server.pem",
            tls_key=pki / "server.key",
            tls_client_ca=pki / "ca.pem",
        )
    )
    with (
        Client(address, tls_ca=pki / "ca.pem") as anonymous,
        pytest.raises(ConnectionFailedError) as caught,
    ):
        anonymous.analyze(MLP)
    assert "does it want a client certificate (--tls-cert, --tls-key)" in str(caught.value)
    with Client(
        address, tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem", tls_key=pki / "client.key"
    ) as client:
        assert client.analyze(MLP).total_params == 50_200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


def test_unreachable_servers_exit_5_with_a_hint(start_server, pki, capsys):
    tls = start_server(**_settings(tls_cert=pki / "server.pem", tls_key=pki / "server.key"))
    plain, nobody = start_server(), f"127.0.0.1:{_free_port()}"
    cases = [
        (nobody, [], "is the server running there? (use --tls-ca if it serves TLS)"),
        (tls, [], "it closed the connection: if it serves TLS, use --tls-ca"),
        (plain, ["--tls-ca", pki / "ca.pem"], "it does not serve TLS: leave out the --tls-* flags"),
        (
            tls,
            ["--tls-ca", pki / "other_ca.pem"],
            "its certificate is not signed by the --tls-ca CA",
        ),
    ]
    for address, flags, hint in cases:
        for debug in ([], ["--debug"]):
            argv = [*debug, "remote", "analyze", str(MLP), "--server", address, *map(str, flags)]
            code = main(argv)
            err = capsys.readouterr().err
            assert code == ConnectionFailedError.exit_code == 5, (argv, err)
            lines = err.splitlines()
            assert lines[-1].startswith(
                f"ConnectionFailedError: cannot reach an onnxprune server at {address}: {hint} "
                "(gRPC: "
            ), (argv, err)
            if debug:
                assert lines[0] == "Traceback (most recent call last):"
            else:
                assert len(lines) == 1  # one line, no traceback


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
