"""The fixed vocabularies of what happened to a request: outcomes, failure stages, consent states, rule actions.

Their values are metric label values and access-log fields, so they never change spelling; a StrEnum member
is its value wherever a string goes (f-strings, JSON, dict keys, `==`). Metrics pre-initialise every member.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a request ended: the access-log record's `outcome`, privproxy_requests_total{outcome}."""

    FORWARDED = "forwarded"  # to the origin (or a vendor's collector), whatever it answered
    REDIRECTED = "redirected"  # plain HTTP, answered with the redirect to HTTPS
    REFUSED = "refused"  # plain HTTP whose Host cannot be redirected to safely
    BAD_REQUEST = "bad_request"  # a head no origin reads one way only
    NOT_FORWARDED = "not_forwarded"  # a beacon that cannot be decoded (or over its limit): answered here
    HEAD_TOO_LARGE = "head_too_large"
    HEAD_TIMEOUT = "head_timeout"
    TOO_LARGE = "too_large"  # a body over its limit
    UPGRADE_REFUSED = "upgrade_refused"  # an origin's 101 that is no WebSocket
    CLIENT_CLOSED = "client_closed"  # the visitor left before the answer
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"  # the origin did not start its answer in time: the proxy's own 504
    ERROR = "error"  # privproxy could not read the request: answered 500, not forwarded
    ACME_CHALLENGE = "acme_challenge"  # an ACME CA's HTTP-01 validation, answered by privproxy (--acme)


class Stage(StrEnum):
    """Where a filter failed; each failure is handled fail-closed and counted, privproxy_scrub_failures_total{stage}."""

    REQUESTHEADERS = "requestheaders"
    CLASSIFY = "classify"
    CLIENT_IP = "client_ip"
    COOKIE = "cookie"
    SET_COOKIE = "set_cookie"
    HTTPS_REDIRECT = "https_redirect"  # no longer raised (the redirect is pipeline.own_answer); kept for dashboards
    HTTPS_HEADERS = "https_headers"
    ACCESS_LOG = "access_log"
    LOG_PATH = "log_path"
    LOG_REFERRER = "log_referrer"
    BEACON = "beacon"


class ConsentState(StrEnum):
    """A member-linkage consent decision (privproxy_consent_decisions_total{state}): the token's own state, or
    the signal that overrode a valid one."""

    NONE = "none"
    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    FORGED = "forged"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    # overrides of a valid token: the strictest signal wins
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    GPC = "gpc"
    DNT = "dnt"
    TCF = "tcf"
    BEACON_OPT_OUT = "beacon_opt_out"


class BeaconConsent(StrEnum):
    """Whether a beacon's identifiers passed (privproxy_beacons_total{consent})."""

    NONE = "none"
    GIVEN = "given"


class Action(StrEnum):
    """What a rule does to a matching value (filters.yaml `action:`, privproxy_fields_scrubbed_total{action})."""

    DROP = "drop"
    REDACT = "redact"
    HASH = "hash"
    TRUNCATE = "truncate"
    GENERALIZE = "generalize"
    KEEP = "keep"


class LogStream(StrEnum):
    """An access log: anonymous, or linked to consenting members (privproxy_log_records_total{stream})."""

    ACCESS = "access"
    LINKED = "linked"


class Source(StrEnum):
    """Who made the answer a visitor got (privproxy_responses_total{source})."""

    ORIGIN = "origin"  # the site's origin
    VENDOR = "vendor"  # whatever serves a beacon collection path (an analytics vendor's collector)
    PROXY = "proxy"  # privproxy itself: redirects, refusals, beacons not forwarded, 502/504 for a failed origin


class Result(StrEnum):
    """A (re)load of the rules or of the GeoIP database."""

    SUCCESS = "success"
    FAILURE = "failure"
