"""Configuration: Quay's own ``config.yaml``, validated once into frozen dataclasses.

Every ``*_LOGIN_CONFIG`` block with an ``OIDC_SERVER`` is a provider (``GITHUB_`` and ``GOOGLE_``
blocks are OAuth, not OIDC). Its id is the part of the key before the first underscore, lowercased,
as Quay names its login services. From each block we read ``OIDC_SERVER``, ``CLIENT_ID``,
``OIDC_ISSUER``, ``OIDC_ISSUERS``, ``OIDC_AUDIENCES``, ``OIDC_ALLOWED_CLIENTS`` and the optional
``OIDC_JWKS_URI``; every other key of Quay's block is ignored and ``CLIENT_SECRET`` is never
copied anywhere. Middleware-wide settings live in the optional ``OIDC_MIDDLEWARE_CONFIG`` block.

:func:`load_config` reports every problem at once, each with its key path, so that an operator
can fix a configuration in one pass.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Union
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError

ConfigSource = Union[Mapping[str, Any], str, "os.PathLike[str]"]

MIDDLEWARE_BLOCK: Final = "OIDC_MIDDLEWARE_CONFIG"
_NOT_OIDC: Final = frozenset({"GITHUB_LOGIN_CONFIG", "GOOGLE_LOGIN_CONFIG"})
# Path segments of Entra's multi-tenant endpoints and the placeholder in their issuer.
_MULTI_TENANT: Final = frozenset({"common", "organizations", "consumers", "{tenantid}"})


@dataclass(frozen=True)
class Setting:
    """One key of ``OIDC_MIDDLEWARE_CONFIG``: its default and what values it takes.

    ``kind`` is ``int`` (within ``minimum``-``maximum``), ``bool``, ``choice`` (one of
    ``choices``), ``paths`` (a list of URL path prefixes), ``url`` (an http(s) URL) or ``file``
    (the path of a readable file); ``url`` and ``file`` settings default to None (unset).
    """

    kind: str
    default: Any
    minimum: int = 0
    maximum: int = 0
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {_type(value)}"
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                return f"must be an integer, got {_type(value)}"
            if not self.minimum <= value <= self.maximum:
                return f"must be between {self.minimum} and {self.maximum}, got {value}"
            return None
        if self.kind == "choice":
            return (
                None if value in self.choices else f"must be one of {', '.join(self.choices)}, got {value!r}"
            )
        if self.kind == "url":
            parts = urlsplit(value) if isinstance(value, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                return f"must be an http or https URL, got {_type(value) if parts is None else repr(value)}"
            return None
        if self.kind == "file":
            if not isinstance(value, str) or not os.path.isfile(value) or not os.access(value, os.R_OK):
                return f"must be the path of an existing, readable file, got {value!r}"
            return None
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list of path prefixes, got {_type(value)}"
        bad = [item for item in value if not isinstance(item, str) or not item.startswith("/")]
        return f"path prefixes must be strings starting with '/', got {bad[0]!r}" if bad else None

    def convert(self, value: Any) -> Any:
        return tuple(value) if self.kind == "paths" else value


SETTINGS: Final[dict[str, Setting]] = {
    # Clock skew tolerated on exp, nbf and iat.
    "LEEWAY_SECONDS": Setting("int", 60, 0, 600),
    # Shortest time between two key fetches caused by tokens naming an unknown kid. Bounds the
    # load one attacker can put on the identity provider to one fetch per provider per interval.
    "JWKS_MIN_REFRESH_SECONDS": Setting("int", 60, 1, 86400),
    # Lifetime of a fetched key set and discovery document when the response names none; a
    # Cache-Control max-age is honoured between 5 minutes and a day.
    "JWKS_CACHE_SECONDS": Setting("int", 3600, 60, 86400),
    # How long the last keys that worked stay in use while the provider cannot be reached.
    "KEYS_MAX_STALENESS_SECONDS": Setting("int", 86400, 60, 7 * 86400),
    # Longest wait between two attempts after failed fetches (the wait starts at about a second).
    "FETCH_BACKOFF_MAX_SECONDS": Setting("int", 30, 1, 3600),
    # Verified-token cache: how many accepted tokens are remembered (0: no cache), and for how
    # long at most (never past the token's own exp + leeway).
    "TOKEN_CACHE_ENTRIES": Setting("int", 4096, 0, 1_000_000),
    "TOKEN_CACHE_SECONDS": Setting("int", 600, 1, 3600),
    # Longest token accepted; Entra access tokens are 1.5-3 KiB, with many groups up to ~8 KiB.
    "MAX_TOKEN_BYTES": Setting("int", 16 * 1024, 1024, 64 * 1024),
    # Per fetch: TCP/TLS connect timeout, timeout of each read, and a deadline for the whole fetch.
    "HTTP_CONNECT_TIMEOUT_SECONDS": Setting("int", 3, 1, 60),
    "HTTP_READ_TIMEOUT_SECONDS": Setting("int", 5, 1, 60),
    "FETCH_DEADLINE_SECONDS": Setting("int", 8, 1, 120),
    # Largest discovery or JWKS document read.
    "MAX_RESPONSE_BYTES": Setting("int", 1024 * 1024, 4096, 16 * 1024 * 1024),
    # Proxy and CA bundle for the fetches, when they must differ from Quay's own client's: unset,
    # the environment's HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE (else certifi's bundle) are
    # used, as Quay's client uses them (fetch.route). .netrc is never read.
    "HTTPS_PROXY": Setting("url", None),
    "CA_BUNDLE": Setting("file", None),
    # Paths whose Bearer tokens are examined (the JWT-in-Basic routes of Quay always are).
    "PROTECTED_PATHS": Setting("paths", ("/api/", "/v2/")),
    # What happens to a JWT whose issuer no provider claims (Quay's own registry tokens, iss quay).
    "UNKNOWN_ISSUER": Setting("choice", "pass", choices=("pass", "reject")),
    # Leave error_description out of responses; the audit log keeps it.
    "HIDE_ERROR_DESCRIPTIONS": Setting("bool", False),
    # Where a token of a service principal (app-only: no person) is accepted. Quay makes every
    # accepted API or docker-login token a Quay user with a person's full powers, so by default
    # such a token is refused there (app_only_token) and accepted only by robot federation, which
    # trades it for a robot's token with the robot's permissions. "anywhere" accepts it on every
    # path, as a user named after the service principal.
    "APP_ONLY_TOKENS": Setting("choice", "robot_federation", choices=("robot_federation", "anywhere")),
    # Robot federation with oidc_middleware.quay.install: which of a robot's federation entries
    # a token matches. "provider": an entry naming any issuer of the provider that issued the token
    # (v1.0 and v2.0 of one tenant), so that the migration breaks no robot; "exact": only an entry
    # naming the token's own issuer, as Quay alone matches.
    "ROBOT_ISSUER_MATCH": Setting("choice", "provider", choices=("provider", "exact")),
}


@dataclass(frozen=True)
class ProviderConfig:
    """One OIDC provider, from one ``*_LOGIN_CONFIG`` block.

    ``issuers`` is empty when the issuer is to be taken from the discovery document.
    ``allowed_clients`` is None when any authorized party is allowed.
    """

    id: str
    config_key: str
    oidc_server: str
    client_id: str
    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    allowed_clients: frozenset[str] | None = None
    jwks_uri: str | None = None

    @property
    def discovery_url(self) -> str:
        return self.oidc_server + ".well-known/openid-configuration"


@dataclass(frozen=True)
class MiddlewareConfig:
    """Everything the middleware needs; built by :func:`load_config`."""

    providers: tuple[ProviderConfig, ...]
    leeway_seconds: int = SETTINGS["LEEWAY_SECONDS"].default
    jwks_min_refresh_seconds: int = SETTINGS["JWKS_MIN_REFRESH_SECONDS"].default
    jwks_cache_seconds: int = SETTINGS["JWKS_CACHE_SECONDS"].default
    keys_max_staleness_seconds: int = SETTINGS["KEYS_MAX_STALENESS_SECONDS"].default
    fetch_backoff_max_seconds: int = SETTINGS["FETCH_BACKOFF_MAX_SECONDS"].default
    token_cache_entries: int = SETTINGS["TOKEN_CACHE_ENTRIES"].default
    token_cache_seconds: int = SETTINGS["TOKEN_CACHE_SECONDS"].default
    max_token_bytes: int = SETTINGS["MAX_TOKEN_BYTES"].default
    http_connect_timeout_seconds: int = SETTINGS["HTTP_CONNECT_TIMEOUT_SECONDS"].default
    http_read_timeout_seconds: int = SETTINGS["HTTP_READ_TIMEOUT_SECONDS"].default
    fetch_deadline_seconds: int = SETTINGS["FETCH_DEADLINE_SECONDS"].default
    max_response_bytes: int = SETTINGS["MAX_RESPONSE_BYTES"].default
    https_proxy: str | None = None
    ca_bundle: str | None = None
    protected_paths: tuple[str, ...] = SETTINGS["PROTECTED_PATHS"].default
    unknown_issuer: str = SETTINGS["UNKNOWN_ISSUER"].default
    hide_error_descriptions: bool = SETTINGS["HIDE_ERROR_DESCRIPTIONS"].default
    app_only_tokens: str = SETTINGS["APP_ONLY_TOKENS"].default
    robot_issuer_match: str = SETTINGS["ROBOT_ISSUER_MATCH"].default
    # Quay's own SERVER_HOSTNAME and PREFERRED_URL_SCHEME, for the realm of challenges; when
    # absent, the request's Host header is used.
    server_hostname: str | None = None
    preferred_url_scheme: str = "https"


def load_config(source: ConfigSource | MiddlewareConfig) -> MiddlewareConfig:
    """Build a :class:`MiddlewareConfig` from Quay's config (mapping or YAML path).

    Raises :class:`ConfigError` listing every problem found.
    """
    if isinstance(source, MiddlewareConfig):
        return source
    document = read_document(source)
    problems: list[str] = []
    if not isinstance(document, Mapping):
        raise ConfigError([f"(top level): must be a mapping, got {_type(document)}"])
    providers = []
    for key in sorted(k for k in document if isinstance(k, str) and k.endswith("_LOGIN_CONFIG")):
        block = document[key]
        if key in _NOT_OIDC:
            continue
        if not isinstance(block, Mapping):
            problems.append(f"{key}: must be a mapping, got {_type(block)}")
            continue
        if "OIDC_SERVER" not in block:
            stray = sorted(k for k in block if k in _PROVIDER_KEYS and k != "CLIENT_ID")
            if stray:
                problems.append(f"{key}: has {', '.join(stray)} but no OIDC_SERVER")
            continue
        provider = _provider(key, block, problems)
        if provider is not None:
            providers.append(provider)
    if not providers and not problems:
        problems.append("(top level): no *_LOGIN_CONFIG block with an OIDC_SERVER: nothing to validate")
    _check_unique(providers, problems)
    settings = _settings(document.get(MIDDLEWARE_BLOCK), problems)
    settings.update(_quay_server(document, problems))
    if problems:
        raise ConfigError(problems)
    return MiddlewareConfig(providers=tuple(providers), **settings)


def _quay_server(document: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """Quay's SERVER_HOSTNAME and PREFERRED_URL_SCHEME, used in WWW-Authenticate realms."""
    values: dict[str, Any] = {}
    hostname = document.get("SERVER_HOSTNAME")
    if hostname is not None:
        if isinstance(hostname, str) and re.fullmatch(
            r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", hostname
        ):
            values["server_hostname"] = hostname
        else:
            problems.append(f"SERVER_HOSTNAME: must be a host name with an optional port, got {hostname!r}")
    scheme = document.get("PREFERRED_URL_SCHEME")
    if scheme is not None:
        if scheme in ("http", "https"):
            values["preferred_url_scheme"] = scheme
        else:
            problems.append(f"PREFERRED_URL_SCHEME: must be http or https, got {scheme!r}")
    return values


_PROVIDER_KEYS: Final = frozenset(
    {"OIDC_SERVER", "CLIENT_ID", "OIDC_ISSUER", "OIDC_ISSUERS", "OIDC_AUDIENCES",
     "OIDC_ALLOWED_CLIENTS", "OIDC_JWKS_URI"}
)  # fmt: skip


# OIDC_* keys of Quay's own login block that this middleware does not read.
_QUAY_OIDC_KEYS: Final = frozenset({"OIDC_ENDPOINT_CUSTOM_PARAMS", "OIDC_DISABLE_USER_ENDPOINT"})


def _misspelt_keys(key: str, block: Mapping[str, Any], problems: list[str]) -> None:
    """A near miss of a security key (OIDC_ALLOWED_CLIENT) would silently open access: refuse it."""
    for name in block:
        if not isinstance(name, str) or name in _PROVIDER_KEYS or name in _QUAY_OIDC_KEYS:
            continue
        close = difflib.get_close_matches(name, _PROVIDER_KEYS - {"CLIENT_ID"}, n=1, cutoff=0.85)
        if close and name.upper().startswith("OIDC"):
            problems.append(f"{key}.{name}: unknown key; did you mean {close[0]}?")


def _placeholder(value: str) -> bool:
    """``<tenant-id>`` and the like: a value copied from an example and never filled in."""
    return "<" in value or ">" in value


def _provider(key: str, block: Mapping[str, Any], problems: list[str]) -> ProviderConfig | None:
    before = len(problems)
    _misspelt_keys(key, block, problems)
    server = _url(f"{key}.OIDC_SERVER", block.get("OIDC_SERVER"), problems)
    client_id = block.get("CLIENT_ID")
    if not isinstance(client_id, str) or not client_id.strip():
        problems.append(f"{key}.CLIENT_ID: required, a non-empty string (got {_type(client_id)})")
    elif _placeholder(client_id):
        problems.append(f"{key}.CLIENT_ID: {client_id!r} looks like an unfilled placeholder")
    if "OIDC_ISSUERS" in block:
        path, listed = f"{key}.OIDC_ISSUERS", block["OIDC_ISSUERS"]
        good = _string_list(path, listed, problems)
        if listed == []:
            problems.append(f"{path}: must not be empty (omit it to use OIDC_ISSUER)")
        indexed = enumerate(listed) if isinstance(listed, list) else enumerate([])
        candidates = [(f"{path}[{i}]", item) for i, item in indexed if item in good]
    elif block.get("OIDC_ISSUER") is not None:
        candidates = [(f"{key}.OIDC_ISSUER", block["OIDC_ISSUER"])]
    else:
        candidates = []
    issuers = [issuer for path, issuer in candidates if _url(path, issuer, problems)]
    audiences = _string_list(f"{key}.OIDC_AUDIENCES", block.get("OIDC_AUDIENCES", []), problems)
    allowed = None
    if "OIDC_ALLOWED_CLIENTS" in block:
        allowed = _string_list(f"{key}.OIDC_ALLOWED_CLIENTS", block["OIDC_ALLOWED_CLIENTS"], problems)
    jwks_uri = None
    if block.get("OIDC_JWKS_URI") is not None:
        jwks_uri = _url(f"{key}.OIDC_JWKS_URI", block["OIDC_JWKS_URI"], problems)
    if len(problems) > before or server is None or not isinstance(client_id, str):
        return None
    return ProviderConfig(
        id=key.split("_", 1)[0].lower(),
        config_key=key,
        oidc_server=server if server.endswith("/") else server + "/",
        client_id=client_id,
        issuers=tuple(dict.fromkeys(issuers)),
        # As Quay 3.18 does: CLIENT_ID is always an accepted audience.
        audiences=tuple(dict.fromkeys([client_id, *audiences])),
        allowed_clients=None if allowed is None else frozenset(allowed),
        jwks_uri=jwks_uri,
    )


def _string_list(path: str, value: Any, problems: list[str]) -> list[str]:
    if not isinstance(value, list):
        problems.append(f"{path}: must be a list of strings, got {_type(value)}")
        return []
    good = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, str):
            problems.append(f"{where}: must be a string, got {_type(item)}")
        elif not item.strip():
            problems.append(f"{where}: must not be empty")
        elif item.strip() == "*":
            problems.append(f"{where}: wildcards are not accepted; list each value explicitly")
        elif _placeholder(item):
            problems.append(f"{where}: {item!r} looks like an unfilled placeholder")
        else:
            good.append(item)
    return good


def _url(path: str, value: Any, problems: list[str]) -> str | None:
    problem = url_problem(value)
    if problem is not None:
        problems.append(f"{path}: {problem}")
        return None
    return str(value)


def url_problem(value: Any) -> str | None:
    """Why ``value`` is not an acceptable provider URL, or None when it is."""
    if not isinstance(value, str) or not value:
        return f"must be an absolute https URL, got {_type(value)}"
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        return f"is not a valid URL, got {value!r}"
    if parts.scheme not in ("https", "http") or not host:
        return f"must be an absolute https URL, got {value!r}"
    if parts.scheme == "http" and not _is_loopback(host):
        return f"must use https (plain http only for loopback hosts), got {value!r}"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials in the URL"
    if parts.query or parts.fragment:
        return f"must not have a query or fragment, got {value!r}"
    if _placeholder(value):
        return f"{value!r} looks like an unfilled placeholder"
    segments = {segment.lower() for segment in parts.path.split("/")}
    placeholder = sorted(segments & _MULTI_TENANT) or (["*"] if "*" in value else [])
    if placeholder:
        return (
            f"{placeholder[0]!r} is a multi-tenant placeholder; each tenant must be configured "
            f"explicitly with its own tenant id, got {value!r}"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_unique(providers: list[ProviderConfig], problems: list[str]) -> None:
    by_id: dict[str, str] = {}
    owner: dict[str, str] = {}
    for provider in providers:
        if provider.id in by_id:
            problems.append(
                f"{provider.config_key}: provider id {provider.id!r} is also the id of "
                f"{by_id[provider.id]}; rename one block"
            )
        by_id.setdefault(provider.id, provider.config_key)
        for issuer in provider.issuers:
            normal = normalize_issuer(issuer)
            if normal in owner and owner[normal] != provider.config_key:
                problems.append(
                    f"{provider.config_key}: issuer {issuer!r} is also claimed by "
                    f"{owner[normal]}; a token's issuer must map to one provider"
                )
            owner.setdefault(normal, provider.config_key)


def _settings(block: Any, problems: list[str]) -> dict[str, Any]:
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        problems.append(f"{MIDDLEWARE_BLOCK}: must be a mapping, got {_type(block)}")
        return {}
    values = {}
    for key, value in block.items():
        path = f"{MIDDLEWARE_BLOCK}.{key}"
        setting = SETTINGS.get(key)
        if setting is None:
            close = difflib.get_close_matches(str(key), SETTINGS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(SETTINGS)}"
            problems.append(f"{path}: unknown key{hint}")
        elif (problem := setting.problem(value)) is not None:
            problems.append(f"{path}: {problem}")
        else:
            values[key.lower()] = setting.convert(value)
    return values


def read_document(source: ConfigSource) -> Any:
    """The configuration document: a mapping as given, or a YAML file parsed (ConfigError if not)."""
    return source if isinstance(source, Mapping) else _read_yaml(os.fspath(source))


def normalize_issuer(issuer: str) -> str:
    """Issuers are compared exactly, with one trailing ``/`` ignored (as Quay 3.18 does)."""
    return issuer[:-1] if issuer.endswith("/") else issuer


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}: is not valid YAML{where}"]) from None


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
