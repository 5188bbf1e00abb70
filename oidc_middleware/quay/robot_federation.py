"""Robot federation decided by the validator: Quay's ``/oauth2/federation/robot/token`` with
:func:`~oidc_middleware.quay.install`.

A CI job or workload sends Basic ``<org>+<robot>:<its own OIDC token>`` and gets a short-lived
robot token back. Quay alone builds a login service for the token's issuer on every exchange
(one discovery and one key-set request each, a 500 when the provider is down), checks neither the
audience (3.15, 3.17; 3.18 only for robots that have ``audiences``) nor the calling application,
and matches the robot's ``federation_config`` on the exact issuer string.

With ``install``, for a token whose issuer belongs to a configured provider:

    token ----> validator (signature on cached keys, time, OIDC_AUDIENCES, OIDC_ALLOWED_CLIENTS)
                  -- refused --> Quay never sees it (the middleware answered 401 already)
    robot's federation entries (Quay's FederatedLogin row of the robot Quay looked up)
      none                                   --> robot_not_federated
      none whose issuer matches              --> robot_issuer_not_listed
      none whose subject is the token's sub  --> robot_subject_mismatch
      every match lists audiences (3.18) and
      none is the token's                    --> robot_audience_mismatch
      otherwise: Quay's own action log entry and robot token

An entry's issuer matches when it is the token's, or (``ROBOT_ISSUER_MATCH: provider``, the
default) another issuer of the same provider and tenant: a robot federated with the v2.0 issuer
keeps working for v1.0 tokens of the same service principal, and the other way round. Issuers
no provider claims keep Quay's own code, untouched.

Every exchange with a token of ours ends in one audit event with its final outcome (the middleware
leaves accepted robot-federation tokens to us): a refusal here is recorded as it happens, anything
else by :class:`SettleExchanges` once Quay has answered. The client is told the reason code and a
fixed sentence; the robot's federation itself is never echoed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ..credentials import ROBOT_FEDERATION, Credential
from ..errors import (
    ISSUER_NOT_CONFIGURED,
    KEYS_UNAVAILABLE,
    ROBOT_AUDIENCE_MISMATCH,
    ROBOT_EXCHANGE_REFUSED,
    ROBOT_ISSUER_NOT_LISTED,
    ROBOT_NOT_FEDERATED,
    ROBOT_NOT_FOUND,
    ROBOT_SUBJECT_MISMATCH,
    TokenRejected,
)
from ..keys import FetchNeeded
from ..principal import Principal
from ..validator import TokenValidator
from ..wsgi import CREDENTIAL_KEY, PRINCIPAL_KEY, http_request
from .flask_request import current_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MODULE: Final = "util.security.federated_robot_auth"
# Set in the request's environ once the exchange's one event is written.
SETTLED_KEY: Final = "oidc.robot_exchange_settled"
# The verified principal and the issuer of the robot's entry it matched, until Quay has answered.
MATCHED_KEY: Final = "oidc.robot_exchange_matched"


@dataclass(frozen=True)
class FederationEntry:
    """One entry of a robot's ``federation_config``: who may act as the robot."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = ()  # Quay 3.18: when set, the token's aud must be one of them


def federation_entries(metadata_json: Any) -> list[FederationEntry]:
    """The entries of a robot's ``FederatedLogin.metadata_json``; malformed ones are skipped."""
    try:
        metadata = json.loads(metadata_json) if isinstance(metadata_json, (str, bytes)) else {}
    except ValueError:
        return []
    items = metadata.get("federation_config") if isinstance(metadata, dict) else None
    entries = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        issuer, subject, audiences = item.get("issuer"), item.get("subject"), item.get("audiences")
        if isinstance(issuer, str) and isinstance(subject, str):
            kept = tuple(a for a in audiences if isinstance(a, str)) if isinstance(audiences, list) else ()
            entries.append(FederationEntry(issuer, subject, kept))
    return entries


def match_entry(
    entries: list[FederationEntry], principal: Principal, validator: TokenValidator, *, exact: bool
) -> FederationEntry:
    """The entry of the robot's federation config that lets this verified token act as the
    robot, or a :class:`TokenRejected` with a robot reason.

    The entries whose issuer matches (see :func:`_same_authority`) are the robot's for this token;
    one of them must name its ``sub``. When any of them lists ``audiences`` (Quay 3.18 takes the
    audiences of any entry of the issuer, whatever its subject), the token's ``aud`` must be one
    of those: an entry without audiences never widens what another entry narrowed.
    """
    if not entries:
        raise TokenRejected(ROBOT_NOT_FEDERATED, "the robot has no federation configured")
    listed = [entry for entry in entries if _same_authority(entry.issuer, principal, validator, exact)]
    if not listed:
        names = ", ".join(sorted({entry.issuer[:120] for entry in entries}))
        how = "" if exact else " (nor another issuer of its provider and tenant)"
        raise TokenRejected(
            ROBOT_ISSUER_NOT_LISTED,
            f"the robot's federation lists {names}, not the token's issuer {principal.issuer[:120]}{how}",
            provider=principal.provider,
        )
    matched = [entry for entry in listed if entry.subject == principal.subject]
    if not matched:
        raise TokenRejected(
            ROBOT_SUBJECT_MISMATCH,
            f"no federation entry of the robot names the subject {principal.subject[:120]}",
            provider=principal.provider,
        )
    narrowed = {audience for entry in listed for audience in entry.audiences}
    if narrowed and not _token_audiences(principal) & narrowed:
        raise TokenRejected(
            ROBOT_AUDIENCE_MISMATCH,
            f"the robot's federation takes the audiences {', '.join(sorted(narrowed))[:240]}, not the token's",
            provider=principal.provider,
        )
    # The entry naming the token's own issuer, when there is one: the event says which matched.
    return next((entry for entry in matched if entry.issuer == principal.issuer), matched[0])


def _same_authority(listed: str, principal: Principal, validator: TokenValidator, exact: bool) -> bool:
    """Whether a federation entry's issuer speaks for the token's issuer.

    Always when they are the same string (as Quay compares). Otherwise, unless ``exact``: when the
    validator maps both to one provider and, for a token naming its tenant (``tid``), the entry's
    issuer names that tenant too (a path segment, as in both Entra issuers), so that a provider
    configured with issuers of two tenants never lets one tenant's principal act for the other's.
    """
    if listed == principal.issuer:
        return True
    if exact:
        return False
    try:
        keys = validator.provider_for({"iss": listed}, may_fetch=False)
    except (TokenRejected, FetchNeeded):
        return False
    if keys.provider.id != principal.provider:
        return False
    tenant = principal.tenant_id
    if tenant is None:
        return True  # a provider without tenants: its issuers speak for each other
    return bool(tenant) and tenant in urlsplit(listed).path.split("/")


def _token_audiences(principal: Principal) -> set[str]:
    aud = principal.claims.get("aud")
    return {aud} if isinstance(aud, str) else {item for item in aud or () if isinstance(item, str)}


# What the client is told of a robot refusal: the reason and a fixed sentence. The robot's own
# federation (its issuers, subjects, audiences) is for its administrators and the audit log only.
_TOLD: Final = {
    ROBOT_NOT_FEDERATED: "the robot has no federation configured",
    ROBOT_ISSUER_NOT_LISTED: "the token's issuer is not configured for this robot",
    ROBOT_SUBJECT_MISMATCH: "the token does not match the robot",
    ROBOT_AUDIENCE_MISMATCH: "the token's audience is not accepted for this robot",
}


class RobotExchange:
    """Quay's ``verify_federated_robot_jwt_token`` and ``lookup_robot`` (as the federation module
    calls them), deciding the tokens of configured providers; see the module's docstring."""

    def __init__(self, validator: TokenValidator, module: ModuleType, model: ModuleType) -> None:
        self.validator = validator
        self.module: Any = module  # Quay's util.security.federated_robot_auth
        self.not_found: type[Exception] = model.InvalidRobotException  # Quay's data.model
        self.exact = validator.config.robot_issuer_match == "exact"
        self.hide = validator.config.hide_error_descriptions
        self.original_verify = module.verify_federated_robot_jwt_token
        self.original_lookup = module.lookup_robot

    def connect(self) -> None:
        self.module.verify_federated_robot_jwt_token = self.verify
        self.module.lookup_robot = self.lookup

    def disconnect(self) -> None:
        self.module.verify_federated_robot_jwt_token = self.original_verify
        self.module.lookup_robot = self.original_lookup

    def lookup(self, robot_username: Any) -> Any:
        try:
            return self.original_lookup(robot_username)
        except self.not_found:
            refused = TokenRejected(ROBOT_NOT_FOUND, "no robot account has this name")
            settle(self.validator, current_environ(), refused=refused)
            raise

    def verify(self, robot: Any, token: Any) -> Any:
        module = self.module
        environ = current_environ()
        principal = self._principal(environ, token)
        if principal is None:
            return self.original_verify(robot, token)  # not ours: Quay's own code decides
        federated = module.FederatedLogin.select().where(module.FederatedLogin.user == robot)
        row = federated.first()
        try:
            entry = match_entry(
                federation_entries(getattr(row, "metadata_json", None)),
                principal,
                self.validator,
                exact=self.exact,
            )
        except TokenRejected as refused:
            settle(self.validator, environ, principal=principal, refused=refused)
            raise self._refusal(refused) from None
        namespace, robot_name = module.parse_robot_username(robot.username)
        # Quay's own audit entry, with the fields Quay writes for an exchange.
        module.log_action(
            "federated_robot_token_exchange",
            namespace,
            {"subject": principal.subject, "issuer": principal.issuer, "robot": robot_name},
        )
        if environ is not None:
            # Recorded by SettleExchanges with Quay's final answer (the robot token is yet to come).
            environ[MATCHED_KEY] = (principal, entry.issuer)
        return module.ValidateResult(module.AuthKind.credentials, robot=robot)

    def _principal(self, environ: dict[str, Any] | None, token: Any) -> Principal | None:
        """The verified principal of ``token``; None when no provider claims its issuer."""
        if not isinstance(token, str):
            return None
        credential = environ.get(CREDENTIAL_KEY) if environ is not None else None
        if isinstance(credential, Credential) and credential.token == token:
            accepted: Principal | None = environ.get(PRINCIPAL_KEY) if environ is not None else None
            if accepted is not None:
                return accepted  # the middleware in front verified this very token
        try:
            return self.validator.validate(token)
        except TokenRejected as refused:
            if refused.reason != ISSUER_NOT_CONFIGURED:
                settle(self.validator, environ, refused=refused)
                raise self._refusal(refused) from None
            if not self.validator.discovering:
                return None
            # A provider's issuers are still unknown: this one may be among them. Never Quay's
            # looser check for a token that may be ours.
            unsure = TokenRejected(KEYS_UNAVAILABLE, "a provider's issuer is still being discovered")
            raise self._refusal(unsure) from None

    def _refusal(self, refused: TokenRejected) -> Exception:
        """Quay's exception for a refusal (a 400 with its message); the detail stays in the log."""
        told = (
            refused.reason
            if self.hide
            else f"{refused.reason}: {_TOLD.get(refused.reason, refused.description)}"
        )
        exception: Exception = self.module.InvalidRobotCredentialException(told)
        return exception


def settle(
    validator: TokenValidator,
    environ: dict[str, Any] | None,
    *,
    principal: Principal | None = None,
    refused: TokenRejected | None = None,
    listed_issuer: str | None = None,
) -> None:
    """Write the exchange's one event (accepted without ``refused``), once per request, and only
    for an exchange whose token the middleware accepted (other exchanges are not ours, or were
    recorded by the middleware when it refused them)."""
    if environ is None or environ.get(SETTLED_KEY):
        return
    credential = environ.get(CREDENTIAL_KEY)
    if not isinstance(credential, Credential) or credential.kind != ROBOT_FEDERATION:
        return
    environ[SETTLED_KEY] = True
    principal = principal or environ.get(PRINCIPAL_KEY)
    request = http_request(environ, environ.get("HTTP_AUTHORIZATION") or "")
    if refused is None and principal is not None:
        validator.recorder.accepted(request, credential, principal, listed_issuer=listed_issuer)
    elif refused is not None:
        validator.recorder.rejected(
            request, credential, refused, principal=principal, listed_issuer=listed_issuer
        )


class SettleExchanges:
    """Inside the middleware, around Quay: the one event of an exchange whose token the middleware
    accepted, written once Quay has answered. Accepted when Quay issued the robot token after
    :class:`RobotExchange` matched an entry; ``robot_exchange_refused`` with Quay's status when
    Quay refused or failed for a reason of its own (a name that is not a robot's, an error after
    the robot checks). Refusals of :class:`RobotExchange` were recorded as they happened."""

    def __init__(self, app: WSGIApplication, validator: TokenValidator) -> None:
        self.app = app
        self.validator = validator

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ.pop(SETTLED_KEY, None)
        environ.pop(MATCHED_KEY, None)
        credential = environ.get(CREDENTIAL_KEY)
        if not isinstance(credential, Credential) or credential.kind != ROBOT_FEDERATION:
            return self.app(environ, start_response)
        statuses: list[str] = []

        def remember(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, remember)
        except Exception:
            self._settle(environ, "500")
            raise
        self._settle(environ, statuses[-1] if statuses else "no answer")
        return body

    def _settle(self, environ: WSGIEnvironment, status_line: str) -> None:
        status = status_line.split(" ", 1)[0]
        matched = environ.get(MATCHED_KEY)
        principal, listed_issuer = matched if matched is not None else (None, None)
        if status.startswith("2"):
            settle(self.validator, environ, principal=principal, listed_issuer=listed_issuer)
            return
        when = "after" if matched is not None else "before"
        refused = TokenRejected(ROBOT_EXCHANGE_REFUSED, f"Quay answered {status} {when} its robot checks")
        settle(self.validator, environ, principal=principal, refused=refused, listed_issuer=listed_issuer)
