"""Fetching discovery documents and key sets: hardened GETs of small JSON documents.

Every fetch has a connect timeout, a timeout on each read and a deadline for the whole fetch (a
provider that drips its answer one byte at a time cannot hold a worker); follows no redirect (a
key URL that moves is a configuration change to make deliberately); reads at most
``MAX_RESPONSE_BYTES``; and reaches the provider the way Quay's own HTTP client does (see
:func:`route`): through the environment's proxy and CA bundle unless ``OIDC_MIDDLEWARE_CONFIG``
names its own (``HTTPS_PROXY``, ``CA_BUNDLE``), which then win. ``.netrc`` credentials are never
sent. TLS certificates are always verified; plain http is only ever configured for loopback hosts.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from . import forks
from .config import MiddlewareConfig
from .jws import refuse_constant

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)
_NO_STORE = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)(?:$|[,\s])", re.IGNORECASE)


class FetchError(Exception):
    """A fetch failed; the message says why and is safe to log (no secrets, no bodies)."""


class _Retriable(Exception):
    """A connection failed in a way worth one more try."""


@dataclass(frozen=True)
class Fetched:
    """A fetched JSON document and the lifetime its Cache-Control gave it (None: none given)."""

    document: Any
    max_age: int | None


def make_session(config: MiddlewareConfig) -> requests.Session:
    """A session for the fetches. requests' own reading of the environment is off, because it
    would also add ``.netrc`` credentials to the requests; :func:`route` reads the proxy and CA
    settings instead, for each fetch."""
    session = requests.Session()
    session.trust_env = False
    return session


def route(url: str, config: MiddlewareConfig) -> tuple[dict[str, str], str | bool]:
    """The proxies and the CA bundle (``verify``) for a fetch of ``url``.

    Plain-http URLs (loopback providers only) go direct. Otherwise ``HTTPS_PROXY`` and
    ``CA_BUNDLE`` of the configuration when set, else what requests
    reads for Quay's own HTTP client, whose settings the Quay Operator and Quay's image provide:
    ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (either case) unless ``NO_PROXY`` names the host;
    ``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``, else certifi's bundle, to which Quay's
    ``conf/init/certs_install.sh`` appends the CAs of ``extra_ca_certs``.
    """
    if not url.startswith("https://"):
        # Plain http is only ever configured for a loopback provider: never through a proxy, which
        # would carry the keys unprotected and fetch them from its own loopback.
        return {}, True
    if config.https_proxy:
        proxies = {"https": config.https_proxy}
    else:
        proxies = requests.utils.get_environ_proxies(url, no_proxy=None)
    verify: str | bool = (
        config.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return proxies, verify


class Fetcher:
    """GETs JSON documents with the limits of one configuration."""

    def __init__(self, config: MiddlewareConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self.session = session if session is not None else make_session(config)
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        # Pooled connections were opened by the parent; a socket must not serve two processes.
        for adapter in self.session.adapters.values():
            adapter.close()

    def deadline(self) -> float:
        """A deadline for one fetch attempt from now (``time.monotonic`` based)."""
        return time.monotonic() + self._config.fetch_deadline_seconds

    def get_json(self, url: str, deadline: float | None = None) -> Fetched:
        """GET ``url`` as JSON; ``deadline`` bounds this fetch and any before it in one attempt.

        A connection that fails without a timeout (typically a pooled keep-alive connection the
        server closed a moment before) is tried once more, within the same deadline.
        """
        deadline = deadline if deadline is not None else self.deadline()
        try:
            return self._get_json(url, deadline)
        except _Retriable:
            return self._get_json(url, deadline, retry=False)

    def _get_json(self, url: str, deadline: float, retry: bool = True) -> Fetched:
        config = self._config
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"no time left to fetch {url} within {config.fetch_deadline_seconds} s")
        limit = config.max_response_bytes
        proxies, verify = route(url, config)
        try:
            with self.session.get(
                url,
                proxies=proxies,
                verify=verify,
                timeout=(
                    min(config.http_connect_timeout_seconds, remaining),
                    min(config.http_read_timeout_seconds, remaining),
                ),
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            ) as response:
                _check_status(response, url)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError(f"response from {url} is {declared} bytes, more than {limit}")
                body = bytearray()
                while chunk := response.raw.read1(64 * 1024, decode_content=True):
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"response from {url} is larger than {limit} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(f"fetching {url} took longer than {config.fetch_deadline_seconds} s")
                content_type = response.headers.get("Content-Type", "unknown")
                cache_control = response.headers.get("Cache-Control", "")
        except requests.Timeout:
            raise FetchError(f"timeout fetching {url}") from None
        except requests.ConnectionError as exc:
            if retry and time.monotonic() < deadline:
                raise _Retriable from None
            raise FetchError(f"{type(exc).__name__} fetching {url}") from None
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__} fetching {url}") from None
        except urllib3.exceptions.ReadTimeoutError:  # the body stalled
            raise FetchError(f"timeout reading {url}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # truncated, bad encoding, reset
            raise FetchError(f"{type(exc).__name__} reading {url}") from None
        return Fetched(_parse(bytes(body), url, content_type), _max_age(cache_control))


def _check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("Location", "")).netloc or "an unnamed location"
        raise FetchError(f"HTTP {status} from {url}: redirect to {target} not followed")
    if status != 200:
        raise FetchError(f"HTTP {status} from {url}")


def _parse(body: bytes, url: str, content_type: str) -> Any:
    try:
        return json.loads(body, parse_constant=refuse_constant)
    except RecursionError:
        raise FetchError(f"response from {url} is nested too deeply") from None
    except ValueError:
        raise FetchError(f"response from {url} is not JSON (Content-Type {content_type[:60]})") from None


def _max_age(cache_control: str) -> int | None:
    if _NO_STORE.search(cache_control):
        return 0
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None
