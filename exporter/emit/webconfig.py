"""The web configuration file of Prometheus exporters (`--web.config.file`, the exporter-toolkit
format): TLS for the metrics endpoint, client certificates, basic auth with bcrypt hashes and
security headers. A file written for node_exporter works here; what Python's TLS cannot do the
same way is said where it is parsed.

The file is read again when it, or a certificate it names, changes: a renewed certificate is
served from the next connection on, without a restart."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}  # fmt: skip
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    # Python's TLS verifies a certificate a client offers; these two then act like
    # VerifyClientCertIfGiven and RequireAndVerifyClientCert, and need client_ca_file.
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's cipher suite names (the file's) to OpenSSL's; TLS 1.3 suites are not configurable.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
_HEADERS = {
    "Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
    "Content-Security-Policy",
}  # fmt: skip
_TLS_KEYS = {
    "cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
    "cipher_suites", "prefer_server_cipher_suites", "curve_preferences", "client_allowed_sans",
}  # fmt: skip
# A hash to check unknown users against, so that they cost as much as known ones.
_DUMMY_HASH = b"$2b$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"


class WebConfigError(ValueError):
    """The file cannot be used; the message names the file and the field."""


@dataclass
class WebConfig:
    path: str
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    allowed_sans: list[str] = field(default_factory=list)
    files: dict[str, float] = field(default_factory=dict)  # what it was built from, by mtime
    _checked: set[tuple[str, bytes]] = field(default_factory=set)  # passwords known good

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries a configured user and its password (or no
        users are configured). Good passwords are remembered as hashes: bcrypt is slow on purpose."""
        if not self.users:
            return True
        import bcrypt

        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        if key in self._checked:
            return True
        ok = bcrypt.checkpw(password.encode(), self.users.get(user, _DUMMY_HASH)) and user in self.users
        if ok:
            self._checked.add(key)
        return ok

    def allows_peer(self, certificate: Mapping[str, Any] | None) -> bool:
        """client_allowed_sans: the client certificate must name one of them."""
        if not self.allowed_sans:
            return True
        names = {value for _, value in (certificate or {}).get("subjectAltName", ())}
        return bool(names & set(self.allowed_sans))

    def changed(self) -> bool:
        return any(_mtime(path) != stamp for path, stamp in self.files.items())


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return -1.0


def _fail(path: str, where: str, problem: str) -> WebConfigError:
    return WebConfigError(f"web.config_file {path!r}: {where}: {problem}")


def _relative(base: Path, value: object, path: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, where, "expected a file path")
    file = Path(value) if Path(value).is_absolute() else base / value
    if not file.is_file():
        raise _fail(path, where, f"{str(file)!r}: no such file")
    return str(file)


def _tls_context(path: str, base: Path, tls: Mapping[str, Any], files: dict[str, float]) -> ssl.SSLContext:
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise _fail(path, f"tls_server_config.{sorted(unknown)[0]}", "unknown field")
    cert = _relative(base, tls.get("cert_file"), path, "tls_server_config.cert_file")
    key = _relative(base, tls.get("key_file"), path, "tls_server_config.key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise _fail(
            path, "tls_server_config.cert_file", f"cannot load the certificate and key: {exc}"
        ) from None
    files.update({cert: _mtime(cert), key: _mtime(key)})
    _client_auth(context, path, base, tls, files)
    _protocol(context, path, tls)
    return context


def _client_auth(
    context: ssl.SSLContext, path: str, base: Path, tls: Mapping[str, Any], files: dict[str, float]
) -> None:
    ca = tls.get("client_ca_file")
    auth = tls.get("client_auth_type") or ("RequireAndVerifyClientCert" if ca else "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise _fail(
            path, "tls_server_config.client_auth_type", f"{auth!r}: expected one of {', '.join(_CLIENT_AUTH)}"
        )
    context.verify_mode = _CLIENT_AUTH[auth]
    if auth == "NoClientCert":
        return
    if not ca:
        raise _fail(path, "tls_server_config.client_ca_file", f"needed with client_auth_type {auth}")
    ca_file = _relative(base, ca, path, "tls_server_config.client_ca_file")
    try:
        context.load_verify_locations(ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise _fail(path, "tls_server_config.client_ca_file", f"cannot load: {exc}") from None
    files[ca_file] = _mtime(ca_file)


def _protocol(context: ssl.SSLContext, path: str, tls: Mapping[str, Any]) -> None:
    """Versions, cipher suites and curves."""
    for name, attribute, default in (
        ("min_version", "minimum_version", "TLS12"),
        ("max_version", "maximum_version", None),
    ):
        version = tls.get(name) or default
        if version is None:
            continue
        if version not in _TLS_VERSIONS:
            raise _fail(
                path, f"tls_server_config.{name}", f"{version!r}: expected one of {', '.join(_TLS_VERSIONS)}"
            )
        setattr(context, attribute, _TLS_VERSIONS[version])
    suites = tls.get("cipher_suites") or []
    unknown = [suite for suite in suites if suite not in _CIPHERS]
    if unknown:
        raise _fail(path, "tls_server_config.cipher_suites", f"{unknown[0]!r} is not supported")
    if suites:
        context.set_ciphers(":".join(_CIPHERS[suite] for suite in suites))
    if tls.get("prefer_server_cipher_suites", True):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    curves = tls.get("curve_preferences") or []
    if curves and curves[0] not in _CURVES:
        raise _fail(
            path,
            "tls_server_config.curve_preferences",
            f"{curves[0]!r}: expected one of {', '.join(_CURVES)}",
        )
    if curves:
        context.set_ecdh_curve(_CURVES[curves[0]])  # Python sets one curve: the first preferred


def _read(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise _fail(path, "file", exc.strerror or str(exc)) from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(path, "file", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, "file", "expected a mapping")
    unknown = set(data) - {"tls_server_config", "http_server_config", "basic_auth_users"}
    if unknown:
        raise _fail(path, sorted(unknown)[0], "unknown field")
    return data


def load_web_config(path: str) -> WebConfig:
    """Parse and check the file; WebConfigError names what is wrong."""
    data = _read(path)
    config = WebConfig(path, files={path: _mtime(path)})
    base = Path(path).resolve().parent
    tls = data.get("tls_server_config")
    if tls:
        if not isinstance(tls, dict):
            raise _fail(path, "tls_server_config", "expected a mapping")
        config.tls = _tls_context(path, base, tls, config.files)
        config.allowed_sans = [str(san) for san in tls.get("client_allowed_sans") or []]
    config.users = _users(path, data.get("basic_auth_users") or {})
    http = data.get("http_server_config") or {}
    for name, value in (http.get("headers") or {}).items():
        if name not in _HEADERS:
            raise _fail(
                path,
                f"http_server_config.headers.{name}",
                f"not allowed; allowed: {', '.join(sorted(_HEADERS))}",
            )
        config.headers[name] = str(value)
    return config


def _users(path: str, users: object) -> dict[str, bytes]:
    if not isinstance(users, dict):
        raise _fail(path, "basic_auth_users", "expected a mapping of user to bcrypt hash")
    checked = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise _fail(path, f"basic_auth_users.{user}", "expected a bcrypt hash ($2a$, $2b$ or $2y$)")
        checked[str(user)] = hashed.encode()
    return checked


class WebGuard:
    """The web configuration in force: checks each request, and reads the file again when it or
    a certificate changed, at the next TLS handshake or request (a bad new file is logged once
    and the last good one kept)."""

    def __init__(self, config: WebConfig | None, on_error: Any = None) -> None:
        self.config = config
        self._on_error = on_error
        self._server_context = config.tls if config else None
        if self._server_context is not None:
            self._server_context.sni_callback = self._hello

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context the server starts with; each handshake is switched to the newest."""
        return self._server_context

    def _hello(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        self.refresh()
        newest = self.config.tls if self.config else None
        if newest is not None and newest is not context:
            connection.context = newest  # the renewed certificate, from this handshake on

    def refresh(self) -> None:
        live = self.config
        if live is None or not live.changed():
            return
        try:
            new = load_web_config(live.path)
        except WebConfigError as exc:
            live.files = {path: _mtime(path) for path in live.files}  # reported once per change
            if self._on_error is not None:
                self._on_error(exc)
            return
        self.config = new
