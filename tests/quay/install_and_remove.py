"""install and remove inside Quay's own process (run with Quay's Python; cwd and PYTHONPATH Quay's
tree, QUAYCONF a configuration directory). Prints one JSON line of findings for the test."""

from __future__ import annotations

import json
import types

import util.security.federated_robot_auth as robots
import web  # noqa: F401  (Quay's web entrypoint)
from app import app as application
from app import oauth_login

from oidc_middleware import OIDCMiddleware, OIDCMiddlewareError
from oidc_middleware.quay import UnsupportedQuay, detect, install, remove

services = {service.service_id(): service for service in oauth_login.services}
robot_functions = (robots.verify_federated_robot_jwt_token, robots.lookup_robot)
classes = {name: type(service) for name, service in services.items()}
wsgi_app, inner = application.wsgi_app, getattr(application.wsgi_app, "app", None)

validator = install(application)
taken_over = sorted(name for name, service in services.items() if type(service) is not classes[name])
robots_taken_over = (robots.verify_federated_robot_jwt_token, robots.lookup_robot) != robot_functions
wrapped = isinstance(getattr(application.wsgi_app, "app", None), OIDCMiddleware)
try:
    install(application)
    second = "no error"
except OIDCMiddlewareError as error:
    second = type(error).__name__

remove(application)
restored = (
    wrapped
    and all(type(service) is classes[name] for name, service in services.items())
    and "get_service_by_issuer" not in vars(oauth_login)
    and application.wsgi_app is wsgi_app
    and getattr(application.wsgi_app, "app", None) is inner
    and (robots.verify_federated_robot_jwt_token, robots.lookup_robot) == robot_functions
)

# A Quay whose user-info helper no longer has the shape this integration knows.
import sys  # noqa: E402

changed = types.ModuleType("oauth.login_utils")


def get_sub_username_email_from_token(decoded_id_token, user_info=None, settings=None):  # type: ignore[no-untyped-def]
    raise AssertionError("never called")


changed.get_sub_username_email_from_token = get_sub_username_email_from_token  # type: ignore[attr-defined]
names = (
    "oauth.oidc",
    "oauth.loginmanager",
    "auth.oauth",
    "util.security.federated_robot_auth",
    "data.model",
    "endpoints.oauth.login",
)
modules = {name: sys.modules[name] for name in names}
try:
    detect({**modules, "oauth.login_utils": changed})
    unrecognised = "no error"
except UnsupportedQuay as error:
    unrecognised = type(error).__name__

# A Quay whose robot federation verifies tokens with another signature.
changed_robots = types.ModuleType("util.security.federated_robot_auth")
changed_robots.__dict__.update(vars(robots))


def verify_federated_robot_jwt_token(robot, token, audience=None):  # type: ignore[no-untyped-def]
    raise AssertionError("never called")


changed_robots.verify_federated_robot_jwt_token = verify_federated_robot_jwt_token  # type: ignore[attr-defined]
try:
    detect({**modules, "oauth.login_utils": sys.modules["oauth.login_utils"],
            "util.security.federated_robot_auth": changed_robots})  # fmt: skip
    robots_unrecognised = "no error"
except UnsupportedQuay as error:
    robots_unrecognised = type(error).__name__

print(
    json.dumps(
        {
            "line": detect().line,
            "taken_over": taken_over,
            "second_install": second,
            "restored": restored,
            "unrecognised": unrecognised,
            "robots_taken_over": robots_taken_over,
            "robots_unrecognised": robots_unrecognised,
        }
    )
)
