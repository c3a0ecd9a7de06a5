"""Who may call what: the explicit table the authorization test walks every route against.

A route the app registers without an entry here fails tests/test_auth.py, so every new endpoint
states its access rule. Callers: anonymous, admin, coordinator, observer, analyst, collector.
"""

EVERYONE = frozenset({"anonymous", "admin", "coordinator", "observer", "analyst", "collector"})
ADMIN = frozenset({"admin"})
ANY_USER = frozenset({"admin", "coordinator", "observer", "analyst"})
COORDINATION = frozenset({"admin", "coordinator"})
OBSERVERS = frozenset({"admin", "coordinator", "observer"})
READERS = frozenset({"admin", "coordinator", "analyst"})
SUBMITTERS = frozenset({"admin", "coordinator", "observer", "collector"})

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
    # questionnaires (the walker uses a published questionnaire with access "token", to which
    # its collector is bound)
    ("POST", "/api/v1/questionnaires"): COORDINATION,
    ("POST", "/api/v1/questionnaires/import"): COORDINATION,
    ("GET", "/api/v1/questionnaires"): ANY_USER,
    ("GET", "/api/v1/questionnaires/{questionnaire_id}"): ANY_USER | {"collector"},
    ("PATCH", "/api/v1/questionnaires/{questionnaire_id}"): COORDINATION,
    ("DELETE", "/api/v1/questionnaires/{questionnaire_id}"): COORDINATION,
    ("POST", "/api/v1/questionnaires/{questionnaire_id}/publish"): COORDINATION,
    ("POST", "/api/v1/questionnaires/{questionnaire_id}/close"): COORDINATION,
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/xform"): ANY_USER | {"collector"},
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/xlsform"): ANY_USER | {"collector"},
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/media"): ANY_USER | {"collector"},
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/media/{name}"): ANY_USER | {"collector"},
    ("PUT", "/api/v1/questionnaires/{questionnaire_id}/media/{name}"): COORDINATION,
    # responses
    ("POST", "/api/v1/questionnaires/{questionnaire_id}/responses"): SUBMITTERS,
    ("POST", "/api/v1/questionnaires/{questionnaire_id}/responses/batch"): SUBMITTERS,
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/responses"): READERS,
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/responses/export"): READERS,
    ("GET", "/api/v1/responses/{response_id}"): READERS,
    ("DELETE", "/api/v1/responses/{response_id}"): ADMIN,
    # attachments: readers read; a response's own submitter (user or collector) and readers
    # may send its files (anyone else is told 404, as for an unknown response)
    ("PUT", "/api/v1/responses/{response_id}/attachments/{name}"): SUBMITTERS | READERS,
    ("GET", "/api/v1/responses/{response_id}/attachments"): READERS,
    ("GET", "/api/v1/responses/{response_id}/attachments/{name}"): READERS,
    # aggregates
    ("GET", "/api/v1/questionnaires/{questionnaire_id}/aggregates"): READERS,
    ("GET", "/api/v1/aggregates/consultations"): READERS,
    ("GET", "/api/v1/aggregates/elections/{election_id}/candidates"): READERS,
    # published aggregates: views made by coordination, read by readers; the view itself public
    # (a `token` view asks for its key, which no walker caller holds: the walker's id is unknown)
    ("POST", "/api/v1/questionnaires/{questionnaire_id}/aggregate-views"): COORDINATION,
    ("GET", "/api/v1/aggregate-views"): READERS,
    ("GET", "/api/v1/aggregate-views/{view_id}"): READERS,
    ("DELETE", "/api/v1/aggregate-views/{view_id}"): COORDINATION,
    ("GET", "/api/v1/public/aggregates/{view_id}"): EVERYONE,
    # territories
    ("POST", "/api/v1/territories"): COORDINATION,
    ("GET", "/api/v1/territories"): ANY_USER,
    ("POST", "/api/v1/territories/import"): COORDINATION,
    ("GET", "/api/v1/territories/{code}"): ANY_USER,
    ("PATCH", "/api/v1/territories/{code}"): COORDINATION,
    # elections and candidates
    ("POST", "/api/v1/elections"): COORDINATION,
    ("GET", "/api/v1/elections"): ANY_USER,
    ("GET", "/api/v1/elections/{election_id}"): ANY_USER,
    ("PATCH", "/api/v1/elections/{election_id}"): COORDINATION,
    ("POST", "/api/v1/elections/{election_id}/candidates"): COORDINATION,
    ("GET", "/api/v1/elections/{election_id}/candidates"): ANY_USER,
    ("GET", "/api/v1/candidates/{candidate_id}"): ANY_USER,
    ("PATCH", "/api/v1/candidates/{candidate_id}"): COORDINATION,
    # consultations and observations
    ("POST", "/api/v1/consultations"): COORDINATION,
    ("GET", "/api/v1/consultations"): ANY_USER,
    ("GET", "/api/v1/consultations.ics"): ANY_USER,
    ("POST", "/api/v1/consultations/import"): COORDINATION,
    ("GET", "/api/v1/consultations/{consultation_id}"): ANY_USER,
    ("PATCH", "/api/v1/consultations/{consultation_id}"): COORDINATION,
    ("POST", "/api/v1/consultations/{consultation_id}/observations"): OBSERVERS,
    ("GET", "/api/v1/consultations/{consultation_id}/observations"): ANY_USER,
    ("GET", "/api/v1/consultations/{consultation_id}/observations/{observation_id}"): ANY_USER,
    # calendar feeds: any user who reads consultations; the feed itself by its URL alone
    ("POST", "/api/v1/calendar-feeds"): ANY_USER,
    ("GET", "/api/v1/calendar-feeds"): ANY_USER,
    ("GET", "/api/v1/calendar-feeds/{feed_id}"): ANY_USER,
    ("DELETE", "/api/v1/calendar-feeds/{feed_id}"): ANY_USER,
    ("GET", "/api/v1/calendar/{token}.ics"): EVERYONE,
    # OpenRosa: the collector token is in the URL; headers play no part (a URL whose token
    # is no collector token at all is 404; tests/test_openrosa.py checks the tokens)
    ("GET", "/openrosa/key/{token}/formList"): EVERYONE,
    ("GET", "/openrosa/key/{token}/forms/{questionnaire_id}.xml"): EVERYONE,
    ("GET", "/openrosa/key/{token}/forms/{questionnaire_id}/manifest"): EVERYONE,
    ("GET", "/openrosa/key/{token}/forms/{questionnaire_id}/media/{filename}"): EVERYONE,
    ("POST", "/openrosa/key/{token}/submission"): EVERYONE,
}
