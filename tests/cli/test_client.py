"""The CLI's sign-in and HTTP handling: msal against a local HTTPS authority, the devhost header, answers.

The authority is a real TLS server on 127.0.0.1 with its own CA (msal refuses http:// authorities),
serving OpenID discovery and a token endpoint for the client-credentials grant.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.client import ApiError, Client, CliError, path_part, sign_in_headers

CLIENT_ID, SECRET, SCOPE = "cli-app", "s3cret", "api://loadbay/.default"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Write a CA and a certificate for 127.0.0.1 signed by it; return (CA, certificate, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loadbay test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


class _Authority(BaseHTTPRequestHandler):
    """OpenID discovery and a token endpoint that grants CLIENT_ID / SECRET a token for SCOPE."""

    def do_GET(self) -> None:
        base = f"https://127.0.0.1:{self.server.server_address[1]}/tenant"
        if self.path.startswith("/tenant/v2.0/.well-known/openid-configuration"):
            self._json(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                },
            )
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        form = {
            name: values[0]
            for name, values in parse_qs(
                self.rfile.read(int(self.headers["Content-Length"])).decode()
            ).items()
        }
        if form.get("client_secret") == "make-it-fail":  # the authority itself is in trouble
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, SECRET):
            self._json(401, {"error": "invalid_client", "error_description": "Wrong client secret."})
        elif form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            self._json(400, {"error": "invalid_request", "error_description": f"Unexpected form {form}."})
        else:
            self._json(200, {"access_token": "token-for-cli-app", "token_type": "Bearer", "expires_in": 3600})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Serve the authority on 127.0.0.1 over TLS; yield its URL and the CA file that trusts it."""
    ca, certificate, key = _certificates(tmp_path_factory.mktemp("authority"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Authority)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/tenant", ca
    server.shutdown()
    server.server_close()


def environment(authority: str, **overrides: str) -> dict[str, str]:
    return {
        "LOADBAY_CLIENT_ID": CLIENT_ID,
        "LOADBAY_CLIENT_SECRET": SECRET,
        "LOADBAY_SCOPE": SCOPE,
        "LOADBAY_AUTHORITY": authority,
        **overrides,
    }


def test_client_credentials_get_a_bearer_token(
    authority: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = authority
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    assert sign_in_headers(None, environment(url)) == {"Authorization": "Bearer token-for-cli-app"}


def test_a_refused_secret_says_why(authority: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = authority
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    with pytest.raises(CliError, match=r"Sign-in failed: invalid_client: Wrong client secret\."):
        sign_in_headers(None, environment(url, LOADBAY_CLIENT_SECRET="wrong"))


def test_an_authority_in_trouble_is_a_sign_in_failure(
    authority: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = authority
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    with pytest.raises(CliError, match="Sign-in failed"):
        sign_in_headers(None, environment(url, LOADBAY_CLIENT_SECRET="make-it-fail"))


def test_an_authority_it_cannot_trust_is_a_sign_in_failure(authority: tuple[str, Path]) -> None:
    with pytest.raises(CliError, match="Sign-in failed"):  # no REQUESTS_CA_BUNDLE: the CA is unknown
        sign_in_headers(None, environment(authority[0]))


def test_missing_settings_are_named() -> None:
    with pytest.raises(CliError, match="LOADBAY_CLIENT_SECRET, LOADBAY_SCOPE, LOADBAY_TENANT_ID"):
        sign_in_headers(None, {"LOADBAY_CLIENT_ID": CLIENT_ID})


def test_a_devhost_user_is_sent_as_a_client_principal() -> None:
    headers = sign_in_headers("ann", {})
    principal = json.loads(base64.b64decode(headers["x-ms-client-principal"]))
    assert principal["userId"] == "ann" and "authenticated" in principal["userRoles"]
    with pytest.raises(CliError, match="Sign in: set LOADBAY_CLIENT_ID"):
        sign_in_headers(None, {})


class _Api(BaseHTTPRequestHandler):
    """Answers GET /api/<case> the way an API, a proxy or a wrong URL might."""

    calls: dict[str, int] = {}

    def do_GET(self) -> None:
        case = self.path.rsplit("/", 1)[1]
        _Api.calls[case] = _Api.calls.get(case, 0) + 1
        if case == "busy" and _Api.calls[case] == 1:
            self._answer(429, b'{"title": "Too many requests"}', {"Retry-After": "0"})
        elif case == "busy":
            self._answer(200, b'{"status": "ok"}')
        elif case == "html":
            self._answer(200, b"<html><body>Sign in</body></html>", {"Content-Type": "text/html"})
        else:
            self._answer(502, b"<html>\n<h1>Bad Gateway</h1>\n</html>", {"Content-Type": "text/html"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_rate_limits_are_waited_out_and_answers_that_are_not_json_are_named() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = Client(f"http://127.0.0.1:{server.server_address[1]}/api", {})
        assert api.call("GET", "/busy") == {"status": "ok"} and _Api.calls["busy"] == 2
        with pytest.raises(CliError, match=r"answered 200 with text/html, not JSON: is --api right\?"):
            api.call("GET", "/html")
        with pytest.raises(ApiError, match=r"^502 Bad Gateway$"):  # one line, not the proxy's page
            api.call("GET", "/proxy")
    finally:
        server.shutdown()
        server.server_close()


def test_path_parts_keep_every_key_in_one_segment() -> None:
    assert [path_part(key) for key in ("..", ".", "a/b?c#d%e", "-x")] == [
        "%2E%2E",
        "%2E",
        "a%2Fb%3Fc%23d%25e",
        "-x",
    ]
