"""Users, logins (with throttling), collectors and resolving a bearer token to a principal."""

from app.services.auth.collectors import create_collector, list_collectors, revoke_collector
from app.services.auth.logins import (
    LoginAttempt,
    begin_login,
    check_password,
    finish_login,
    login_backoff,
    throttle_unit,
)
from app.services.auth.principals import (
    RememberedPrincipals,
    resolve_token,
    resolve_token_raw,
    user_principal,
)
from app.services.auth.users import (
    count_users,
    create_user,
    ensure_bootstrap_admin,
    get_user,
    list_users,
    update_user,
)

__all__ = [
    "LoginAttempt",
    "RememberedPrincipals",
    "begin_login",
    "check_password",
    "count_users",
    "create_collector",
    "create_user",
    "ensure_bootstrap_admin",
    "finish_login",
    "get_user",
    "list_collectors",
    "list_users",
    "login_backoff",
    "resolve_token",
    "resolve_token_raw",
    "revoke_collector",
    "throttle_unit",
    "update_user",
    "user_principal",
]
