"""/metrics behind the exporter-toolkit web configuration file, tried with a real TLS client
(Python's ssl): certificates made here by a CA made here, bcrypt-hashed basic auth, client
certificates required, an expired one, another CA's, a renewed server certificate."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Counter

from exporter.emit.web import make_app, serve
from exporter.emit.webconfig import WebConfigError, WebGuard, load_web_config

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Issued:
    cert: Path
    key: Path


class Authority:
    """A throw-away CA writing PEM files into a folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.path = folder / f"{name}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool, expired: bool = False, file: str | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = (NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1)) if expired else (
            NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=10))  # fmt: skip
        san: list[x509.GeneralName] = [x509.DNSName(name)]
        if server:
            san.append(x509.IPAddress(IPv4Address("127.0.0.1")))
        usage = x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        stem = file or name
        issued = Issued(self.folder / f"{stem}.crt", self.folder / f"{stem}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return issued


def web_config(folder: Path, **sections: object) -> Path:
    path = folder / "web.yml"
    path.write_text(yaml.safe_dump(sections))
    return path


@asynccontextmanager
async def serving(config_path: Path) -> AsyncIterator[int]:
    registry = CollectorRegistry()
    Counter("sfn_demo", "A counter to see.", registry=registry).inc()
    guard = WebGuard(load_web_config(str(config_path)))
    runner, port = await serve(
        make_app(registry, "/metrics", lambda: True, guard), "127.0.0.1", 0, guard.ssl_context
    )
    try:
        yield port
    finally:
        await runner.cleanup()


def get(port: int, path: str, ca: Path, client: Issued | None = None, auth: str | None = None,
        max_version: ssl.TLSVersion | None = None) -> tuple[int, str, dict[str, str], bytes]:  # fmt: skip
    """One HTTPS GET with a verifying client: status, body, headers, the server's certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    if max_version is not None:
        context.maximum_version = max_version
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        peer = connection.sock.getpeercert(binary_form=True) or b""
        return response.status, response.read().decode(), dict(response.headers), peer
    finally:
        connection.close()


async def call(port: int, path: str, ca: Path, **kwargs: object) -> tuple[int, str, dict[str, str], bytes]:
    return await asyncio.to_thread(get, port, path, ca, **kwargs)  # type: ignore[arg-type]


async def test_basic_auth_over_tls(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")
    server = ca.issue("exporter", server=True)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path = web_config(
        tmp_path,
        tls_server_config={
            "cert_file": server.cert.name,
            "key_file": server.key.name,
        },  # relative to the file
        basic_auth_users={"prometheus": hashed},
        http_server_config={"headers": {"X-Content-Type-Options": "nosniff"}},
    )
    async with serving(path) as port:
        status, body, headers, _ = await call(port, "/metrics", ca.path, auth="prometheus:s3cret")
        assert status == 200 and "sfn_demo_total 1.0" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        for wrong in ("prometheus:hunter2", "someone:s3cret", None):
            status, _, headers, _ = await call(port, "/metrics", ca.path, auth=wrong)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), wrong
        assert (await call(port, "/healthz", ca.path))[0] == 200  # probes need no password
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust our CA
            await call(port, "/healthz", Authority(tmp_path, "other").path)


async def test_client_certificates_required(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")
    server = ca.issue("exporter", server=True)
    scraper = ca.issue("scraper", server=False)
    intruder = ca.issue("intruder", server=False)
    expired = ca.issue("scraper", server=False, expired=True, file="expired")
    foreign = Authority(tmp_path, "foreign-ca").issue("scraper", server=False, file="foreign")
    path = web_config(
        tmp_path,
        tls_server_config={
            "cert_file": str(server.cert), "key_file": str(server.key), "client_ca_file": str(ca.path),
            "client_auth_type": "RequireAndVerifyClientCert", "min_version": "TLS12",
            "client_allowed_sans": ["scraper"],
        },
    )  # fmt: skip
    async with serving(path) as port:
        assert (await call(port, "/metrics", ca.path, client=scraper))[0] == 200
        for refused in (None, expired, foreign):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
                await call(port, "/metrics", ca.path, client=refused)
        assert (await call(port, "/metrics", ca.path, client=intruder))[0] == 403  # not an allowed SAN


async def test_an_expired_server_certificate_is_refused_by_clients_and_a_renewed_one_served(
    tmp_path: Path,
) -> None:
    ca = Authority(tmp_path, "ca")
    ca.issue("exporter", server=True, expired=True, file="server")
    path = web_config(tmp_path, tls_server_config={"cert_file": "server.crt", "key_file": "server.key"})
    async with serving(path) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            await call(port, "/healthz", ca.path)
        ca.issue("exporter", server=True, file="server")  # renewed in place, as cert-manager does
        status, _, _, _ = await call(port, "/healthz", ca.path)  # the next handshake reads the new pair
        assert status == 200


async def test_min_version_tls13_refuses_a_tls12_client(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")
    server = ca.issue("exporter", server=True)
    path = web_config(
        tmp_path,
        tls_server_config={
            "cert_file": str(server.cert),
            "key_file": str(server.key),
            "min_version": "TLS13",
        },
    )
    async with serving(path) as port:
        assert (await call(port, "/healthz", ca.path))[0] == 200
        with pytest.raises(ssl.SSLError):
            await call(port, "/healthz", ca.path, max_version=ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}},
         "tls_server_config.cert_file: "),
        ({"basic_auth_users": {"alice": "plaintext"}}, "basic_auth_users.alice: expected a bcrypt hash"),
        ({"tls_config": {}}, "tls_config: unknown field"),
        ({"http_server_config": {"headers": {"Set-Cookie": "x"}}}, "http_server_config.headers.Set-Cookie: not allowed"),
    ],
    ids=["missing-cert", "plain-password", "unknown-field", "header"],
)  # fmt: skip
def test_bad_web_config_files_are_named(tmp_path: Path, sections: dict[str, object], message: str) -> None:
    path = web_config(tmp_path, **sections)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    assert str(caught.value).startswith(f"web.config_file {str(path)!r}: {message}")
    verify = subprocess.run(
        [sys.executable, "-m", "exporter", "verify-config", "--web.config.file", str(path)],
        capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "SFN_EXPORTER_WEB__LISTEN_ADDRESS": "127.0.0.1:0",
             "SFN_EXPORTER_CHECKPOINT__PATH": ":memory:"},
    )  # fmt: skip
    assert verify.returncode == 2 and verify.stderr.strip() == str(caught.value)
