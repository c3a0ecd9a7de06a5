"""Who may call what: the explicit table the authorization test walks every route against.

A route the app registers without an entry here fails tests/test_auth.py, so every new endpoint
states its access rule. Callers: anonymous, admin, coordinator, observer, analyst, collector.
"""

EVERYONE = frozenset({"anonymous", "admin", "coordinator", "observer", "analyst", "collector"})
ADMIN = frozenset({"admin"})
ANY_USER = frozenset({"admin", "coordinator", "observer", "analyst"})

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    # operations and documentation
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/openapi.json"): EVERYONE,
    ("GET", "/docs"): EVERYONE,
    ("GET", "/docs/oauth2-redirect"): EVERYONE,
    ("GET", "/redoc"): EVERYONE,
    # auth
    ("POST", "/api/v1/auth/token"): EVERYONE,
    ("GET", "/api/v1/auth/me"): ANY_USER,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/{user_id}"): ADMIN,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("POST", "/api/v1/collectors"): ADMIN,
    ("GET", "/api/v1/collectors"): ADMIN,
    ("DELETE", "/api/v1/collectors/{collector_id}"): ADMIN,
    ("GET", "/api/v1/audit"): ADMIN,
}
