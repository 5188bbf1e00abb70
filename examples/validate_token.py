"""Validate one bearer token against a Quay config.yaml and print the principal or the reason.

python examples/validate_token.py examples/config.yaml "$TOKEN"
"""

from __future__ import annotations

import sys

import structlog

from oidc_middleware import TokenRejected, TokenValidator

# Key-fetch events go to stderr, so that stdout holds only the decision.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
validator = TokenValidator(sys.argv[1])
try:
    principal = validator.validate(sys.argv[2])
except TokenRejected as rejection:
    print(f"rejected: {rejection.reason} ({rejection.description})")
    sys.exit(1)
print(
    f"accepted: tenant {principal.tenant_id}, object {principal.object_id}, app {principal.authorized_party}"
)
