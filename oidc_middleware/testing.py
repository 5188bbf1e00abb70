"""A small OpenID provider on loopback, shaped like Microsoft Entra ID, for tests and the demo.

It serves, over real HTTP on 127.0.0.1, a v1.0-shaped issuer (``.../sts/{tenant}/``) and a
v2.0-shaped issuer (``.../{tenant}/v2.0``) with their discovery documents and one JWKS, as an Entra
tenant does; and it mints tokens shaped like Entra's v1.0 and v2.0 access tokens. Use it to
test an application behind the middleware without reaching the real identity provider.
Never use its keys for anything else: they are made up on the spot.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from . import base64url
from .crypto import CURVE_SIZES, EC_ALGORITHMS

_CURVES: dict[str, type[ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_ES_FOR_CURVE = {curve: alg for alg, curve in EC_ALGORITHMS.items()}
_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


@dataclass(eq=False)
class SigningKey:
    """A private key that signs test tokens, and its public JWK."""

    kid: str | None
    alg: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def rsa(cls, kid: str | None = "rsa-key-1", *, alg: str = "RS256", bits: int = 2048) -> SigningKey:
        return cls(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def ec(cls, kid: str | None = "ec-key-1", *, curve: str = "P-256") -> SigningKey:
        return cls(kid, _ES_FOR_CURVE[curve], ec.generate_private_key(_CURVES[curve]()))

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK, Entra style (``use: sig``, no ``alg``); ``extra`` adds members."""
        public = self.private_key.public_key()
        jwk: dict[str, Any] = {"use": "sig"}
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk.update(kty="RSA", n=_uint(numbers.n), e=_uint(numbers.e))
        else:
            point = public.public_numbers()
            crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public.curve.name]
            size = CURVE_SIZES[crv]
            jwk.update(
                kty="EC",
                crv=crv,
                x=base64url.encode(point.x.to_bytes(size, "big")),
                y=base64url.encode(point.y.to_bytes(size, "big")),
            )
        if self.kid is not None:
            jwk["kid"] = self.kid
        jwk.update(extra)
        return jwk

    def sign(self, signing_input: bytes, alg: str | None = None) -> bytes:
        alg = alg or self.alg
        digest = _HASHES[alg[2:]]()
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            if alg.startswith("PS"):
                pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
                return key.sign(signing_input, pss, digest)
            return key.sign(signing_input, padding.PKCS1v15(), digest)
        der = key.sign(signing_input, ec.ECDSA(digest))
        r, s = utils.decode_dss_signature(der)
        size = CURVE_SIZES[EC_ALGORITHMS[alg]]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def mint(claims: dict[str, Any], key: SigningKey, *, header: dict[str, Any] | None = None) -> str:
    """A compact JWS of ``claims`` signed by ``key``; ``header`` entries override the defaults
    (a value of None removes a member)."""
    fields: dict[str, Any] = {"typ": "JWT", "alg": key.alg}
    if key.kid is not None:
        fields["kid"] = key.kid
    fields.update(header or {})
    fields = {name: value for name, value in fields.items() if value is not None}
    signing_input = ".".join(
        base64url.encode(json.dumps(part, separators=(",", ":")).encode()) for part in (fields, claims)
    )
    alg = (
        fields["alg"]
        if isinstance(fields.get("alg"), str) and fields["alg"][:2] in ("RS", "PS", "ES")
        else None
    )
    signature = key.sign(signing_input.encode("ascii"), alg)
    return f"{signing_input}.{base64url.encode(signature)}"


class LocalIdP:
    """An Entra-shaped identity provider on loopback (use as a context manager).

    ``v1_issuer`` and ``v2_issuer`` are the two issuers of one tenant, both publishing ``keys``
    at one ``jwks_uri``. Change ``keys`` (or call :meth:`rotate`) to rotate keys; ``hits`` counts
    requests per path. Faults, for testing how a client survives a bad day:

    * ``failing = True``: 503 everywhere;
    * ``fault``: ``"500"``, ``"html"`` (an error page instead of JSON), ``"huge"`` (a 5 MB body),
      ``"redirect"`` (302 to another host), ``"slow"`` (answers after ``delay`` seconds),
      ``"drip"`` (sends the body one byte every ``delay`` seconds), ``"truncate"`` (announces
      more bytes than it sends, then closes);
    * :meth:`stop` then :meth:`start` again: down, then back on the same port.

    ``cache_control`` is sent with every document when set. The token endpoint answers an
    authorization code registered with :meth:`issue_code` (once), as the login code exchange of a
    relying party such as Quay's web UI login expects.

    ``tls=True`` serves https, as a real provider does, with a certificate for 127.0.0.1 from a
    certificate authority made on the spot: :attr:`ca_file` is its PEM, for the clients to trust
    (``REQUESTS_CA_BUNDLE`` for Quay, ``CA_BUNDLE`` for the middleware).
    """

    def __init__(
        self,
        tenant: str = "0b9f3c1e-5a2d-4d8e-9c7b-1f2e3d4c5b6a",
        keys: list[SigningKey] | None = None,
        *,
        tls: bool = False,
    ) -> None:
        self.tenant = tenant
        self._tls = _LoopbackTLS() if tls else None
        self.keys = keys if keys is not None else [SigningKey.rsa("entra-key-1")]
        self.failing = False
        self.fault: str | None = None
        self.delay = 0.0
        self.cache_control: str | None = None
        self.hits: Counter[str] = Counter()
        self.extra_jwks: list[dict[str, Any]] = []
        self.codes: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalIdP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                # The TLS handshake in this request's thread, never in the accepting one.
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(10)
                    self.request.do_handshake()
                super().setup()

            def do_GET(self) -> None:
                idp.hits[self.path] += 1
                idp._respond(self)

            def do_POST(self) -> None:
                idp.hits[self.path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
                status, body = idp._token_answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up mid-answer (timeouts under test) is expected here

        self._server = Server(("127.0.0.1", self._port), Handler)
        if self._tls is not None:
            self._server.socket = self._tls.context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._port = self._server.server_address[1]
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        """Stop serving and delete the certificate files (the IdP cannot be started again)."""
        self.stop()
        if self._tls is not None:
            self._tls.remove()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._port, "LocalIdP was never started"
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self._port}/"

    @property
    def port(self) -> int:
        assert self._port, "LocalIdP was never started"
        return self._port

    @property
    def ca_file(self) -> str | None:
        """With ``tls``: the PEM file of the certificate authority that signed the server's
        certificate (trust it, nothing else); None over plain http."""
        return self._tls.ca_file if self._tls is not None else None

    @property
    def v1_issuer(self) -> str:
        """Shaped like ``https://sts.windows.net/{tid}/`` (trailing slash)."""
        return f"{self.base_url}sts/{self.tenant}/"

    @property
    def v2_issuer(self) -> str:
        """Shaped like ``https://login.microsoftonline.com/{tid}/v2.0`` (no trailing slash)."""
        return f"{self.base_url}{self.tenant}/v2.0"

    @property
    def v1_server(self) -> str:
        """OIDC_SERVER whose discovery document names the v1 issuer."""
        return f"{self.base_url}{self.tenant}/"

    @property
    def v2_server(self) -> str:
        """OIDC_SERVER whose discovery document names the v2 issuer."""
        return f"{self.v2_issuer}/"

    @property
    def jwks_uri(self) -> str:
        return f"{self.base_url}{self.tenant}/discovery/v2.0/keys"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys] + self.extra_jwks}

    def rotate(self, new_key: SigningKey | None = None) -> SigningKey:
        """Publish a new key (first) beside the old ones, as Entra does; return it."""
        key = new_key or SigningKey.rsa(f"entra-key-{uuid.uuid4().hex[:8]}")
        self.keys = [key, *self.keys]
        return key

    def _respond(self, handler: BaseHTTPRequestHandler) -> None:
        fault = self.fault
        if fault == "slow":
            time.sleep(self.delay)
        status, body = self._answer(handler.path)
        data = json.dumps(body).encode()
        content_type = "application/json"
        headers = {}
        if fault == "500":
            status, data = 500, b'{"error": "server_error"}'
        elif fault == "html":
            status, data, content_type = 200, b"<html><body>Sign in to continue</body></html>", "text/html"
        elif fault == "huge":
            data = b'{"keys": [], "padding": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        elif fault == "redirect":
            status, data = 302, b""
            headers["Location"] = "https://attacker.example/keys"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data) + (100 if fault == "truncate" else 0)))
        if self.cache_control is not None:
            handler.send_header("Cache-Control", self.cache_control)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if fault == "truncate":
            handler.wfile.write(data)
            handler.close_connection = True
        elif fault == "drip":
            for index in range(len(data)):
                handler.wfile.write(data[index : index + 1])
                handler.wfile.flush()
                time.sleep(self.delay)
        else:
            handler.wfile.write(data)

    def _answer(self, path: str) -> tuple[int, Any]:
        if self.failing:
            return 503, {"error": "temporarily_unavailable"}
        prefix = f"/{self.tenant}"
        if path in (
            f"{prefix}/.well-known/openid-configuration",
            f"/sts{prefix}/.well-known/openid-configuration",
        ):
            # v1.0: as Entra, under the tenant's login URL and under the issuer itself (which is
            # where a client that knows only the token's issuer looks, Quay's robot federation).
            return 200, self._discovery(self.v1_issuer)
        if path == f"{prefix}/v2.0/.well-known/openid-configuration":
            return 200, self._discovery(self.v2_issuer)
        if path == f"{prefix}/discovery/v2.0/keys":
            return 200, self.jwks()
        return 404, {"error": "not_found"}

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}{self.tenant}/oauth2/v2.0/token"

    def issue_code(self, id_token: str, access_token: str = "opaque-access-token") -> str:  # noqa: S107
        """Register a one-time authorization code that the token endpoint exchanges for these."""
        code = uuid.uuid4().hex
        self.codes[code] = {"id_token": id_token, "access_token": access_token, "token_type": "Bearer"}
        return code

    def _token_answer(self, path: str, form: dict[str, str]) -> tuple[int, Any]:
        if self.failing:
            return 503, {"error": "temporarily_unavailable"}
        if path.partition("?")[0] != f"/{self.tenant}/oauth2/v2.0/token":
            return 404, {"error": "not_found"}
        tokens = self.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or tokens is None:
            return 400, {"error": "invalid_grant"}
        return 200, tokens

    def _discovery(self, issuer: str) -> dict[str, Any]:
        return {
            "issuer": issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": f"{self.base_url}{self.tenant}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["pairwise"],
        }

    # -- tokens ------------------------------------------------------------------------------
    def claims(
        self,
        version: str = "2.0",
        *,
        audience: str = "api://quay-api",
        client: str = "c0ffee00-1111-4222-8333-444455556666",
        user: str | None = None,
        scopes: str | None = None,
        roles: list[str] | None = None,
        lifetime: int = 3600,
        now: float | None = None,
        recipient: str | None = None,
    ) -> dict[str, Any]:
        """Claims shaped like an Entra access token of ``version`` "1.0" or "2.0".

        Without ``user`` it is an app-only (client credentials) token: ``roles``, ``idtyp: app``,
        ``sub`` = ``oid`` = the service principal. With ``user`` (an object id) it is delegated:
        ``scp`` holds ``scopes``, and ``sub`` is pairwise: one value per user and recipient
        application (``recipient``, by default the audience), as Entra makes it, whatever
        application asked for the token.
        """
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.v1_issuer if version == "1.0" else self.v2_issuer,
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "tid": self.tenant,
            "uti": uuid.uuid4().hex[:22],
            "ver": version,
        }
        party = "appid" if version == "1.0" else "azp"
        claims[party] = client
        claims[f"{party}acr"] = "1"
        if user is None:
            service_principal = service_principal_id(client)
            claims.update(oid=service_principal, sub=service_principal, idtyp="app")
            claims["roles"] = roles if roles is not None else ["Quay.Api.ReadWrite"]
        else:
            pairwise = f"{user}:{recipient or audience}"
            claims.update(oid=user, sub=str(uuid.uuid5(uuid.NAMESPACE_OID, pairwise)))
            claims["scp"] = scopes if scopes is not None else "repo:read repo:write"
            claims["name"] = "Test User"
            claims["upn" if version == "1.0" else "preferred_username"] = "user@example.com"
        return claims

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        **claim_options: Any,
    ) -> str:
        """A token signed with this provider's first key (or ``key``)."""
        return mint(
            claims if claims is not None else self.claims(**claim_options), key or self.keys[0], header=header
        )


def service_principal_id(client: str) -> str:
    """The object id of ``client``'s service principal in a :class:`LocalIdP` tenant: the ``sub``
    and ``oid`` of its app-only tokens (what a robot's federation entry names)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, client))


class _LoopbackTLS:
    """A certificate authority made on the spot and a server certificate it signed for
    127.0.0.1 and localhost; the CA's PEM in a file of its own, for clients to trust."""

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc-middleware test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.directory = tempfile.mkdtemp(prefix="oidc-localidp-tls-")
        self.ca_file = os.path.join(self.directory, "ca.pem")
        with open(self.ca_file, "wb") as out:
            out.write(ca.public_bytes(serialization.Encoding.PEM))
        chain = os.path.join(self.directory, "server.pem")
        with open(chain, "wb") as out:
            out.write(server.public_bytes(serialization.Encoding.PEM))
            out.write(
                server_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(chain)

    def remove(self) -> None:
        for name in ("ca.pem", "server.pem"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)


def _uint(value: int) -> str:
    return base64url.encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))
