"""Make Quay itself accept what the validator accepts: :func:`install`, in Quay's WSGI entrypoints.

In ``web.py`` and ``registry.py``, right after ``from app import app as application``::

    from oidc_middleware.quay import install
    validator = install(application)

Quay re-validates every OIDC JWT with its own code: one issuer per provider, and before 3.18 no
audience check. ``install`` puts the :class:`~oidc_middleware.OIDCMiddleware` in front of Quay
(inside Quay's ``ProxyFix``, so it sees the client's address as Quay does) and hands Quay's own
decisions on external OIDC tokens to the same :class:`~oidc_middleware.TokenValidator`:

* ``OAuthLoginManager.get_service_by_issuer`` (on Quay's ``app.oauth_login``): an issuer the
  validator knows (v1.0, v2.0, every ``OIDC_ISSUERS`` entry) finds its provider's login service;
  other issuers are looked up as Quay alone does.
* ``OIDCLoginService.decode_user_jwt`` of each login service whose provider the validator owns:
  the validator decides, whatever options Quay passes (Quay turns the signature check off when
  ``TESTING`` is true, and the audience check off for bearer tokens before 3.18). Its callers are
  Quay's bearer path (``/api/``, ``process_oauth`` web routes), docker login with
  ``$oauthtoken`` (``/v2/auth``, ``/v1/``) and the web UI login callback (the ID token).
* ``OIDCLoginService.allowed_clients`` of those services (Quay 3.18): None, because the
  validator already checked the calling application, ``azp`` or ``appid``; Quay 3.18 would also
  refuse an ``azp`` equal to Quay's own ``CLIENT_ID`` when it is not listed.

* Robot federation (``/oauth2/federation/robot/token``): for tokens of the configured providers,
  the validator decides the token and :mod:`.robot_federation` matches the robot's federation
  entries (across the v1.0 and v2.0 issuers of one provider), with no request to the provider.
* App-only tokens (a service principal, no person) are refused on the API and at docker login
  (``APP_ONLY_TOKENS``): their place is robot federation.

Everything after the decision is Quay's own code: the username, email, federated-login binding,
``FEATURE_USER_CREATION``, the refusal of ``impersonated`` tokens, and their error messages; for
robots, the robot's lookup, Quay's action log entry and the robot token it issues. Quay's own
tokens and issuers no provider claims are not touched.

The taken-over services get a subclass of their own class (``service.__class__``), so the change
is per object and :func:`remove` restores every original. This is the only module that knows
Quay's code; it imports none of it at import time.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

from .. import audit
from ..config import load_config
from ..credentials import BEARER, DOCKER_LOGIN, ID_TOKEN, ROBOT_FEDERATION, Credential, decode_basic
from ..decision import HttpRequest, check_token_use, internal_error
from ..errors import (
    ISSUER_NOT_CONFIGURED,
    KEYS_UNAVAILABLE,
    MALFORMED_TOKEN,
    OIDCMiddlewareError,
    TokenRejected,
)
from ..principal import Principal
from ..validator import TokenValidator
from ..wsgi import CREDENTIAL_KEY, OIDCMiddleware, http_request
from . import first_login, robot_federation
from .first_login import FirstLogins
from .flask_request import current_environ
from .robot_federation import RobotExchange, SettleExchanges

# Where the installation is kept on Flask's application (``application.extensions``).
EXTENSION: Final = "oidc_middleware"

SUPPORTED: Final = "Quay 3.15.x, 3.17.x and 3.18.x"


class UnsupportedQuay(OIDCMiddlewareError):
    """The Quay found is not one this integration knows how to connect to: nothing was changed."""


@dataclass(frozen=True)
class QuayShape:
    """What the installed Quay's code looks like, read from the code itself.

    ``line`` is "3.15", "3.17" or "3.18"; ``found`` lists what was read, for error messages.
    """

    line: str
    found: tuple[str, ...]


def detect(modules: Mapping[str, ModuleType] | None = None) -> QuayShape:
    """Read Quay's shape from its modules; :class:`UnsupportedQuay` when it is not one we know.

    * the bearer path (``auth.oauth.validate_sso_oauth_token``) must look the service up by
      issuer and call its ``decode_user_jwt``;
    * ``OIDCLoginService.decode_user_jwt(token, options)`` and
      ``OAuthLoginManager.get_service_by_issuer(issuer)`` must exist with those parameters;
    * ``get_sub_username_email_from_token`` takes the login service (3.17, 3.18) or its config
      (3.15); ``OIDCLoginService.get_issuers`` and ``allowed_clients`` exist from 3.18 on;
    * robot federation (``util.security.federated_robot_auth``): ``validate_federated_auth``
      calls ``lookup_robot`` and ``verify_federated_robot_jwt_token(robot, token)``, and the module
      holds the names :class:`~oidc_middleware.quay.robot_federation.RobotExchange` uses.
    """
    get = modules.__getitem__ if modules is not None else importlib.import_module
    found: list[str] = []
    try:
        oidc, manager, login_utils, oauth, robots, model = (
            get(name)
            for name in (
                "oauth.oidc",
                "oauth.loginmanager",
                "oauth.login_utils",
                "auth.oauth",
                robot_federation.MODULE,
                "data.model",
            )
        )
    except (ImportError, KeyError) as exc:
        raise UnsupportedQuay(f"this is not Quay's code ({exc}); supported: {SUPPORTED}") from None
    service_class = getattr(oidc, "OIDCLoginService", None)
    manager_class = getattr(manager, "OAuthLoginManager", None)
    user_info = getattr(login_utils, "get_sub_username_email_from_token", None)
    bearer = getattr(oauth, "validate_sso_oauth_token", None)
    problems = []
    decode = _parameters(getattr(service_class, "decode_user_jwt", None))
    found.append(f"OIDCLoginService.decode_user_jwt{decode}")
    if decode[:3] != ("self", "token", "options"):
        problems.append("OIDCLoginService.decode_user_jwt(self, token, options)")
    lookup = _parameters(getattr(manager_class, "get_service_by_issuer", None))
    found.append(f"OAuthLoginManager.get_service_by_issuer{lookup}")
    if lookup != ("self", "issuer"):
        problems.append("OAuthLoginManager.get_service_by_issuer(self, issuer)")
    names = set(getattr(getattr(bearer, "__code__", None), "co_names", ()))
    found.append(f"validate_sso_oauth_token uses {sorted(names & _BEARER_NAMES)}")
    if not names >= _BEARER_NAMES:
        problems.append(
            "auth.oauth.validate_sso_oauth_token calling get_service_by_issuer and decode_user_jwt"
        )
    verify = _parameters(getattr(robots, "verify_federated_robot_jwt_token", None))
    federated = getattr(robots, "validate_federated_auth", None)
    exchange = set(getattr(getattr(federated, "__code__", None), "co_names", ()))
    absent = sorted(name for name in _ROBOT_NAMES if not hasattr(robots, name))
    found.append(f"verify_federated_robot_jwt_token{verify}; robot federation lacks {absent or 'nothing'}")
    if not hasattr(model, "InvalidRobotException"):
        absent.append("data.model.InvalidRobotException")
    if verify != ("robot", "token") or absent or not exchange >= _EXCHANGE_NAMES:
        problems.append(
            f"{robot_federation.MODULE}: validate_federated_auth calling lookup_robot and "
            f"verify_federated_robot_jwt_token(robot, token), beside {', '.join(sorted(_ROBOT_NAMES))}"
        )
    quays_first_login = getattr(login_utils, first_login.NAME, None)
    conduct = _parameters(quays_first_login)
    found.append(f"{first_login.NAME}{conduct[:7]}")
    # Each caller must hold Quay's own function under that name (or ours, installed over it).
    callers_missing = [
        name
        for name in first_login.CALLERS
        if _unwrapped(getattr(_module(get, name), first_login.NAME, None)) is not quays_first_login
    ]
    has_lookup = hasattr(getattr(model, "user", None), "verify_federated_login")
    if conduct[3:5] != ("login_service", "lid") or callers_missing or not has_lookup:
        problems.append(
            f"oauth.login_utils.{first_login.NAME}(config, analytics, auth_system, login_service, lid, ...) "
            f"called by {', '.join(first_login.CALLERS)}"
        )
    third = _parameters(user_info)[2:3]
    found.append(f"get_sub_username_email_from_token third parameter {third}")
    multi_issuer = hasattr(service_class, "get_issuers") and hasattr(service_class, "allowed_clients")
    found.append(f"OIDCLoginService.get_issuers {'present' if multi_issuer else 'absent'}")
    if third == ("config",) and not multi_issuer:
        line = "3.15"
    elif third == ("login_service",):
        line = "3.18" if multi_issuer else "3.17"
    else:
        line = ""
        problems.append(
            "get_sub_username_email_from_token(decoded_id_token, user_info, config|login_service)"
        )
    if problems:
        raise UnsupportedQuay(
            f"unrecognised Quay: expected {'; '.join(problems)}; found {'; '.join(found)}. "
            f"Supported: {SUPPORTED}. Nothing was changed."
        )
    return QuayShape(line, tuple(found))


_BEARER_NAMES: Final = frozenset({"get_service_by_issuer", "decode_user_jwt"})
_EXCHANGE_NAMES: Final = frozenset({"lookup_robot", "verify_federated_robot_jwt_token"})
# What RobotExchange takes from Quay's robot federation module, as Quay's own function does.
_ROBOT_NAMES: Final = frozenset(
    {
        "FederatedLogin",
        "InvalidRobotCredentialException",
        "log_action",
        "ValidateResult",
        "AuthKind",
        "parse_robot_username",
        "lookup_robot",
    }
)


def _unwrapped(function: Any) -> Any:
    """Quay's function under an installed FirstLogins.conduct, else the function itself."""
    owner = getattr(function, "__self__", None)
    return owner.original if isinstance(owner, FirstLogins) else function


def _module(get: Callable[[str], ModuleType], name: str) -> ModuleType | None:
    try:
        return get(name)
    except (ImportError, KeyError):
        return None


def _parameters(function: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return ()


@dataclass
class Installation:
    """What :func:`install` changed, so that :func:`remove` can put it back."""

    application: Any
    validator: TokenValidator
    shape: QuayShape
    login_manager: Any
    services: dict[str, Any]  # provider id -> Quay's login service
    robots: RobotExchange
    first_logins: FirstLogins
    original_classes: dict[str, type] = field(default_factory=dict)
    wrapped: tuple[Any, str, Any] | None = None  # (object, attribute, original WSGI app)


def install(
    application: Any, *, validator: TokenValidator | None = None, quay_app_module: ModuleType | None = None
) -> TokenValidator:
    """Connect Quay's OIDC authentication to one validator and put the middleware in front.

    Loads the configuration from ``application.config`` (:class:`~oidc_middleware.ConfigError`
    lists every problem), reads Quay's shape from its code (:class:`UnsupportedQuay` when it is
    not a supported Quay; then nothing is changed), and returns the validator for ``prefetch()``,
    ``health()``, ``stats()`` and the Prometheus collector. A second call on one app raises.
    ``validator``: one built before for this same configuration, to keep its keys and caches
    (after :func:`remove`, say); ``quay_app_module`` is Quay's ``app`` module (default: the one
    imported as ``app``).
    """
    extensions = application.extensions
    if EXTENSION in extensions:
        raise OIDCMiddlewareError("oidc_middleware is already installed on this application")
    config = load_config(application.config)
    shape = detect()
    module = quay_app_module or sys.modules.get("app")
    login_manager = getattr(module, "oauth_login", None)
    if login_manager is None or id(getattr(module, "app", None)) != id(application):
        raise UnsupportedQuay(
            "install(application) needs Quay's app module, imported as 'app', whose 'app' is this "
            "application and which has 'oauth_login'; call it right after 'from app import app as "
            "application'"
        )
    owned = _owned_services(login_manager, config.providers, importlib.import_module("oauth.oidc"))
    if validator is None:
        validator = TokenValidator(config)
    elif validator.config != config:
        raise ValueError("validator.config differs from the application's configuration")
    robots = RobotExchange(
        validator, importlib.import_module(robot_federation.MODULE), importlib.import_module("data.model")
    )
    first_logins = FirstLogins(
        importlib.import_module("oauth.login_utils")._conduct_oauth_login,
        [importlib.import_module(name) for name in first_login.CALLERS],
        owned.values(),
        importlib.import_module("data.model").user.verify_federated_login,
    )
    installation = Installation(application, validator, shape, login_manager, owned, robots, first_logins)
    # Everything was checked above; the changes themselves cannot fail half-way.
    hook = _QuayHook(validator)
    for provider_id, service in owned.items():
        installation.original_classes[provider_id] = type(service)
        service.__dict__[_HOOK] = hook
        service.__class__ = _validated_class(type(service))
    login_manager.get_service_by_issuer = _issuer_lookup(
        validator, owned, type(login_manager).get_service_by_issuer.__get__(login_manager)
    )
    robots.connect()
    first_logins.connect()
    _wrap(installation)
    extensions[EXTENSION] = installation
    audit.log.info(
        "oidc.quay.installed",
        quay=shape.line,
        providers=sorted(owned),
        testing=bool(application.config.get("TESTING")),
    )
    if application.config.get("TESTING", False):
        audit.log.warning(
            "oidc.quay.testing_enabled",
            description=(
                "TESTING is true (Quay's default): Quay alone would skip the signature check of OIDC "
                "bearer tokens. The validator still checks every token of the configured providers; "
                "set TESTING: false in config.yaml for everything else Quay does differently in tests."
            ),
        )
    return validator


def _owned_services(login_manager: Any, providers: Any, oidc: ModuleType) -> dict[str, Any]:
    """The Quay login service of each configured provider: an OIDCLoginService whose service id
    (Quay's: the config key up to its first underscore) no other service of Quay shares."""
    by_id: dict[str, list[Any]] = {}
    for service in login_manager.services:
        by_id.setdefault(service.service_id(), []).append(service)
    problems = []
    owned = {}
    for provider in providers:
        found = by_id.get(provider.id, [])
        if len(found) != 1:
            problems.append(
                f"{provider.config_key}: Quay has {len(found)} login services with the id {provider.id!r}"
                + ("" if found else " (is the block in Quay's config?)")
            )
        elif not isinstance(found[0], oidc.OIDCLoginService):
            problems.append(
                f"{provider.config_key}: Quay's login service {provider.id!r} is not an OIDC login"
            )
        else:
            owned[provider.id] = found[0]
    if problems:
        raise OIDCMiddlewareError("cannot connect Quay's logins: " + "; ".join(problems))
    return owned


def remove(application: Any) -> None:
    """Undo :func:`install`: Quay's own functions and the original WSGI app are back."""
    installation: Installation | None = application.extensions.pop(EXTENSION, None)
    if installation is None:
        raise OIDCMiddlewareError("oidc_middleware is not installed on this application")
    for provider_id, service in installation.services.items():
        service.__class__ = installation.original_classes[provider_id]
        service.__dict__.pop(_HOOK, None)
    installation.login_manager.__dict__.pop("get_service_by_issuer", None)
    installation.robots.disconnect()
    installation.first_logins.disconnect()
    if installation.wrapped is not None:
        holder, attribute, original = installation.wrapped
        setattr(holder, attribute, original)


def _wrap(installation: Installation) -> None:
    """The middleware in front of Quay's app: inside Werkzeug's ProxyFix when Quay put one there
    (so that audit events see the client's address), else around ``wsgi_app``."""
    application = installation.application
    outer = application.wsgi_app
    holder, attribute = (outer, "app") if _is_proxy_fix(outer) else (application, "wsgi_app")
    original = getattr(holder, attribute)
    validator = installation.validator
    middleware = OIDCMiddleware(
        SettleExchanges(original, validator),
        None,
        validator=validator,
        recorded_by_app=frozenset({ROBOT_FEDERATION}),  # RobotExchange records the final outcome
    )
    setattr(holder, attribute, middleware)
    installation.wrapped = (holder, attribute, original)


def _is_proxy_fix(app: Any) -> bool:
    return type(app).__name__ == "ProxyFix" and hasattr(app, "app")


# -- the decision Quay asks for -----------------------------------------------------------------

_HOOK: Final = "_oidc_middleware_hook"


class _QuayHook:
    """Quay asks the validator about one token: decided, recorded once, translated for Quay."""

    def __init__(self, validator: TokenValidator) -> None:
        self.validator = validator
        self.recorder = validator.recorder

    def decode(self, token: Any, provider_id: str) -> dict[str, Any]:
        """The verified claims, as Quay's ``decode_user_jwt`` returns them, or Quay's exception."""
        environ = current_environ()
        request, credential = _request_and_credential(environ, token)
        decided = environ.get(CREDENTIAL_KEY) if environ is not None else None
        # The middleware already accepted this very token in this request: it was recorded then.
        already_recorded = isinstance(decided, Credential) and decided.token == token
        principal: Principal | None = None
        try:
            if not isinstance(token, str):
                raise TokenRejected(MALFORMED_TOKEN, "the token is not a string")
            principal = self.validator.validate(token)
            if principal.provider != provider_id:
                # Quay would bind this identity to the wrong login service.
                raise TokenRejected(
                    ISSUER_NOT_CONFIGURED,
                    f"issuer {principal.issuer[:120]!r} belongs to provider {principal.provider!r}, "
                    f"not to {provider_id!r}",
                    provider=principal.provider,
                )
            misused = check_token_use(credential.kind, principal, self.validator.config)
            if misused is not None:
                raise misused
        except TokenRejected as refused:
            self.recorder.rejected(request, credential, refused, principal=principal)
            raise quay_exception(refused) from None
        except Exception as exc:
            failure = internal_error(request, token, exc)
            self.recorder.rejected(request, credential, failure)
            raise quay_exception(failure) from None
        if not already_recorded:
            self.recorder.accepted(request, credential, principal)
        return _claims_for_quay(principal)


def quay_exception(refused: TokenRejected) -> Exception:
    """The exception Quay's callers of ``decode_user_jwt`` already catch, for a refusal.

    Missing keys are Quay's ``PublicKeyLoadException``; every other reason PyJWT's
    ``InvalidTokenError``. The message starts with the reason code and never holds the token;
    its '%' are doubled, as Quay formats the messages it aborts with.
    """
    # Quay renders the message with ``message % {}``: a '%' from the token (a kid) must stay text.
    message = f"{refused.reason}: {refused.description}".replace("%", "%%")
    if refused.reason == KEYS_UNAVAILABLE:
        exception: type[Exception] = importlib.import_module("oauth.oidc").PublicKeyLoadException
    else:
        exception = importlib.import_module("jwt").InvalidTokenError
    return exception(message)


def _validated_class(base: type) -> type:
    """``base`` (Quay's OIDCLoginService or a subclass) with the validator's decisions."""
    cached = _CLASSES.get(base)
    if cached is not None:
        return cached

    def decode_user_jwt(self: Any, token: Any, options: Any = None) -> dict[str, Any]:
        # Quay's options are ignored on purpose: with TESTING it turns the signature check off.
        hook: _QuayHook | None = self.__dict__.get(_HOOK)
        if hook is None:  # removed while this request ran: refuse, never fall back to Quay's decode
            raise quay_exception(TokenRejected(KEYS_UNAVAILABLE, "oidc_middleware is being removed"))
        return hook.decode(token, self.service_id())

    def allowed_clients(self: Any) -> None:
        return None  # the validator checked azp and appid against OIDC_ALLOWED_CLIENTS already

    validated = type(
        base.__name__,
        (base,),
        {
            "decode_user_jwt": decode_user_jwt,
            "allowed_clients": property(allowed_clients),
            "__module__": __name__,
            "__qualname__": f"Validated{base.__name__}",
        },
    )
    _CLASSES[base] = validated
    return validated


_CLASSES: dict[type, type] = {}


def _issuer_lookup(
    validator: TokenValidator, owned: Mapping[str, Any], original: Callable[[str], Any]
) -> Callable[[str], Any]:
    """Quay's ``get_service_by_issuer``, knowing every issuer of the validator's providers."""

    taken_over = {id(service) for service in owned.values()}

    def get_service_by_issuer(issuer: Any) -> Any:
        if not isinstance(issuer, str):
            return None  # Quay then answers "Issuer ... not configured"
        try:
            keys = validator.provider_for({"iss": issuer})
        except TokenRejected:
            # Not an issuer of ours: as Quay alone decides, except that a service of ours is never
            # chosen for an issuer the validator does not know (Quay strips every trailing '/').
            service = original(issuer)
            return None if id(service) in taken_over else service
        return owned[keys.provider.id]

    return get_service_by_issuer


_NO_REQUEST: Final = HttpRequest("-", "-", "", (), "", "")


def _request_and_credential(environ: dict[str, Any] | None, token: Any) -> tuple[HttpRequest, Credential]:
    """The request for the audit event, and where the token came from: the Authorization
    header (Bearer, or docker login's Basic password), the body of docker's v1 login
    (``/v1/``), else Quay got it from the provider (the ID token of the login callback)."""
    text = token if isinstance(token, str) else ""
    if environ is None:
        return _NO_REQUEST, Credential(ID_TOKEN, text)
    header = environ.get("HTTP_AUTHORIZATION") or ""
    request = http_request(environ, header)
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip() == text:
        return request, Credential(BEARER, text)
    if scheme.lower() == "basic" and decode_basic(value.strip())[1] == text:
        return request, Credential(DOCKER_LOGIN, text)
    if request.path.startswith("/v1/"):
        return request, Credential(DOCKER_LOGIN, text)  # docker's v1 login posts it in the body
    return request, Credential(ID_TOKEN, text)


def _claims_for_quay(principal: Principal) -> dict[str, Any]:
    """The verified claims as plain JSON values (Quay may store or serialize them)."""
    thawed: dict[str, Any] = _thaw(principal.claims)
    return thawed


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {name: _thaw(item) for name, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value
