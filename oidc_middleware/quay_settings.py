"""What Quay itself makes of its ``config.yaml``, which ``check-config`` reports beside the
middleware's own checks (``load_config``): settings that weaken what Quay checks, and settings
that stop Quay from starting or logging in. Read from Quay's code; none of it is imported.

* **Start-up, every version.** Each container of Quay's image runs ``config-tool validate`` at
  start (``conf/init/d_validate_config_bundle.sh``). For every ``*_LOGIN_CONFIG`` block but
  ``GITHUB_`` and ``GOOGLE_`` it requires ``OIDC_SERVER``, ``CLIENT_ID``, ``CLIENT_SECRET`` and
  ``SERVICE_NAME`` as non-empty strings, an ``OIDC_SERVER`` ending in ``/``, strings for
  ``SERVICE_ICON``, ``VERIFIED_EMAIL_CLAIM_NAME`` and ``PREFERRED_USERNAME_CLAIM_NAME``, and a list
  for ``LOGIN_SCOPES``.
* **Start-up, 3.18.** ``OIDCLoginService.__init__`` raises for an ``OIDC_ISSUER`` that is not a
  string and for an ``OIDC_ISSUERS``, ``OIDC_AUDIENCES`` or ``OIDC_ALLOWED_CLIENTS`` that is not a
  list, is empty, or holds anything but strings: Quay's app does not import.
* **Login, 3.17 and 3.18.** With ``USE_PKCE``, a ``PKCE_METHOD`` other than ``S256`` or ``plain``
  raises at every web login.
* **Weakened checks.** ``TESTING`` true (Quay's default) skips the signature, expiry and audience
  checks of OIDC bearer tokens in Quay alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_NOT_OIDC: Final = frozenset({"GITHUB_LOGIN_CONFIG", "GOOGLE_LOGIN_CONFIG"})
_REQUIRED: Final = ("OIDC_SERVER", "CLIENT_ID", "CLIENT_SECRET", "SERVICE_NAME")
_STRINGS: Final = ("SERVICE_ICON", "VERIFIED_EMAIL_CLAIM_NAME", "PREFERRED_USERNAME_CLAIM_NAME")
_LISTS_318: Final = ("OIDC_ISSUERS", "OIDC_AUDIENCES", "OIDC_ALLOWED_CLIENTS")
CONFIG_TOOL: Final = "Quay's start-up (config-tool validate, every version) refuses it"
QUAY_318: Final = "Quay 3.18 does not start (OIDCLoginService)"


def quay_settings_problems(document: Mapping[str, Any]) -> list[str]:
    """Every problem Quay itself has with ``document``, each with its key path and who refuses it."""
    problems = []
    if document.get("TESTING") is not False:
        problems.append(
            f"TESTING: must be false in production, got {_shown(document.get('TESTING'))} (Quay's default "
            "is true). With TESTING true Quay alone skips the signature, expiry and audience checks of "
            "OIDC bearer tokens and accepts forged ones; oidc_middleware.quay.install still checks every "
            "token of the configured providers, but set TESTING: false for everything else Quay relaxes"
        )
    for key in sorted(k for k in document if isinstance(k, str) and k.endswith("_LOGIN_CONFIG")):
        block = document[key]
        if key in _NOT_OIDC or not isinstance(block, Mapping):
            continue  # not an OIDC block; a block that is not a mapping is load_config's to report
        problems.extend(_login_block_problems(key, block))
    return problems


def _login_block_problems(key: str, block: Mapping[str, Any]) -> list[str]:
    problems = []
    for field in _REQUIRED:
        value = block.get(field)
        if not isinstance(value, str) or not value:
            problems.append(
                f"{key}.{field}: required, a non-empty string, got {_shown(value)}; {CONFIG_TOOL}"
            )
    server = block.get("OIDC_SERVER")
    if isinstance(server, str) and server and not server.endswith("/"):
        problems.append(f"{key}.OIDC_SERVER: must end with '/', got {server!r}; {CONFIG_TOOL}")
    for field in _STRINGS:
        if field in block and not isinstance(block[field], str):
            problems.append(f"{key}.{field}: must be a string, got {_shown(block[field])}; {CONFIG_TOOL}")
    if "LOGIN_SCOPES" in block and not isinstance(block["LOGIN_SCOPES"], list):
        problems.append(
            f"{key}.LOGIN_SCOPES: must be a list, got {_shown(block['LOGIN_SCOPES'])}; {CONFIG_TOOL}"
        )
    issuer = block.get("OIDC_ISSUER")
    if issuer is not None and not isinstance(issuer, str):
        problems.append(f"{key}.OIDC_ISSUER: must be a string, got {_shown(issuer)}; {QUAY_318}")
    for field in _LISTS_318:
        if field not in block or block[field] is None:
            continue
        value = block[field]
        if not isinstance(value, list):
            problems.append(f"{key}.{field}: must be a list, got {_shown(value)}; {QUAY_318}")
        elif not value:
            what = (
                "remove the key to allow any client" if field == "OIDC_ALLOWED_CLIENTS" else "remove the key"
            )
            problems.append(f"{key}.{field}: must not be empty ({what}); {QUAY_318}")
        elif not all(isinstance(item, str) for item in value):
            problems.append(f"{key}.{field}: must hold only strings; {QUAY_318}")
    method = block.get("PKCE_METHOD", "S256")
    if block.get("USE_PKCE") and method not in ("S256", "plain"):
        problems.append(
            f"{key}.PKCE_METHOD: must be S256 or plain, got {_shown(method)}; Quay 3.17 and 3.18 fail "
            "every web login with it"
        )
    return problems


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value[:80])
    return type(value).__name__
