"""Who is calling: API keys (legacy LibreChat) and LibreChat's Bearer JWTs.

Credentials, by ``RCE_AUTH_MODE``:

- ``api_key``: ``X-API-Key: <key>``, ``Authorization: Bearer <key>`` or, for old
  clients, ``LIBRECHAT_CODE_API_KEY`` in the JSON body. The caller is
  ``Caller(KEY_TENANT, None)``; ``with_asserted_user`` may then narrow it to the user
  the request names.
- ``jwt``: ``Authorization: Bearer <JWT>`` minted by LibreChat
  (``packages/api/src/auth/codeapi.ts``): EdDSA or RS256, header ``{alg, typ, kid}``,
  claims ``iss aud sub iat nbf exp jti tenant_id role principal_source
  auth_context_hash``. The caller is ``Caller("jwt:" + tenant_id, sub)``.
- ``both``: either of the above. When a request carries ``X-API-Key`` and
  ``Authorization`` together (LibreChat's provision service does, when a key is
  configured and JWTs are on), ``Authorization`` is the credential that counts and
  the key is ignored: a valid key never rescues an invalid token.
- ``none``: no credentials are read; every request is ``Caller(KEY_TENANT, None)``.
  Only for a trusted network (current LibreChat without JWT sends no auth header).

Tenant separation rule: a JWT tenant is always ``"jwt:" + tenant_id`` (``legacy`` when
the claim is absent, as LibreChat does for single-tenant installs). ``KEY_TENANT`` has
no colon, so no token, whatever its ``tenant_id``, can name the API-key tenant.

Every failure is ``AuthenticationFailed`` with a message that never echoes a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from core.errors import AuthenticationFailed, InvalidRequest
from core.identity import KEY_TENANT, Caller
from handler.jwks import (
    ASYMMETRIC_ALGORITHMS,
    KeyConfigError,
    KeySet,
    PublicKey,
    key_set,
    parse_keys,
)
from handler.jwks import read_key_file as _read_key_file
from handler.settings import DEFAULT_API_KEY, Settings

JWT_TENANT_PREFIX = "jwt:"
DEFAULT_JWT_TENANT = "legacy"
MAX_TOKEN_LIFETIME_S = 300  # LibreChat caps its TTL at 300 s; a longer token is not its
MAX_IDENTITY_CHARS = 256
_MAX_TOKEN_CHARS = 16 * 1024
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_MISSING_ANY = "missing credentials: send X-API-Key or Authorization: Bearer"
_MISSING_JWT = "missing credentials: send Authorization: Bearer <JWT>"
_CLAIM_ERRORS: tuple[tuple[type[jwt_errors.PyJWTError], str], ...] = (
    (jwt_errors.ExpiredSignatureError, "token expired"),
    (jwt_errors.ImmatureSignatureError, "token not yet valid"),
    (jwt_errors.InvalidAudienceError, "token audience mismatch"),
    (jwt_errors.InvalidIssuerError, "token issuer mismatch"),
    (jwt_errors.InvalidIssuedAtError, "token iat is not a number"),
    (jwt_errors.InvalidSubjectError, "token sub is invalid"),
    (jwt_errors.DecodeError, "malformed token"),
)


def _claim_error(exc: jwt_errors.PyJWTError) -> AuthenticationFailed:
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return AuthenticationFailed(f"token lacks the {exc.claim!r} claim")
    for kind, message in _CLAIM_ERRORS:
        if isinstance(exc, kind):
            return AuthenticationFailed(message)
    return AuthenticationFailed("invalid token")


def _identity(value: object, what: str) -> str:
    """A non-empty printable string of at most ``MAX_IDENTITY_CHARS``, or raise."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_IDENTITY_CHARS
        or not value.isprintable()
    ):
        raise AuthenticationFailed(f"token {what} is invalid")
    return value


def jwt_tenant(tenant_id: str) -> str:
    """The caller tenant for a token's ``tenant_id`` (never equal to ``KEY_TENANT``)."""
    return JWT_TENANT_PREFIX + tenant_id


def _caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    user = _identity(claims.get("sub"), "sub")
    tenant = _identity(claims.get("tenant_id", DEFAULT_JWT_TENANT), "tenant_id")
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > MAX_TOKEN_LIFETIME_S:
        raise AuthenticationFailed(f"token lifetime exceeds {MAX_TOKEN_LIFETIME_S} s")
    return Caller(jwt_tenant(tenant), user)


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class _JwtVerifier:
    """Verifies LibreChat tokens against configured public keys; pure and thread-safe."""

    def __init__(self, keys: KeySet, algorithms: list[str], settings: Settings) -> None:
        self._keys = keys
        self._algorithms = frozenset(algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway_s = settings.jwt_leeway_s

    def verify(self, token: str) -> Caller:
        """The caller a valid token names; ``AuthenticationFailed`` otherwise."""
        if len(token) > _MAX_TOKEN_CHARS or not _looks_like_jwt(token):
            raise AuthenticationFailed("malformed token")
        alg, kid = self._header(token)
        claims = self._decode(token, alg, self._keys_for(kid, alg))
        return _caller_from_claims(claims)

    def _keys_for(self, kid: str | None, alg: str) -> list[PublicKey]:
        pool = self._keys.for_kid(kid)
        if not pool:
            raise AuthenticationFailed("unknown token key id (kid)")
        fitting = [k.key for k in pool if k.fits(alg)]
        if not fitting:
            raise AuthenticationFailed("token algorithm does not match the key")
        return fitting

    def _header(self, token: str) -> tuple[str, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError as exc:
            raise AuthenticationFailed("malformed token") from exc
        # pyjwt has already refused a kid that is not a string.
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ", "JWT")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthenticationFailed("token algorithm not allowed")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthenticationFailed("malformed token: typ must be JWT")
        return alg, kid

    def _decode(self, token: str, alg: str, keys: list[PublicKey]) -> dict[str, Any]:
        for key in keys:
            try:
                return self._decode_with(token, alg, key)
            except jwt_errors.InvalidSignatureError:
                continue  # key rotation: another key with this kid may fit
            except jwt_errors.PyJWTError as exc:
                raise _claim_error(exc) from exc
        raise AuthenticationFailed("invalid token signature")

    def _decode_with(self, token: str, alg: str, key: PublicKey) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway_s,
            options={"require": _REQUIRED_CLAIMS, "verify_signature": True},
        )


def _load_key_set(settings: Settings) -> KeySet:
    sources = []
    if settings.jwt_public_key is not None:
        sources.append(("RCE_JWT_PUBLIC_KEY", settings.jwt_public_key.get_secret_value(), False))
    if settings.jwt_public_key_file:
        sources.append(("RCE_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file, True))
    if not sources:
        raise ValueError("RCE_JWT_PUBLIC_KEY or RCE_JWT_PUBLIC_KEY_FILE is required for JWTs")
    parsed = []
    for variable, value, is_file in sources:
        try:
            parsed.append(_read_key_file(value) if is_file else parse_keys(value))
        except KeyConfigError as exc:
            raise ValueError(f"{variable}: {exc}") from exc
    return key_set(parsed)


def _allowed_algorithms(settings: Settings, keys: KeySet) -> list[str]:
    algorithms = [a for a in settings.jwt_algorithm_list() if a in ASYMMETRIC_ALGORITHMS]
    if not algorithms:
        raise ValueError(
            f"RCE_JWT_ALGORITHMS: name at least one of {sorted(ASYMMETRIC_ALGORITHMS)}"
        )
    if not any(key.fits(alg) for key in keys.keys for alg in algorithms):
        raise ValueError(
            f"RCE_JWT_PUBLIC_KEY/RCE_JWT_PUBLIC_KEY_FILE: no key fits RCE_JWT_ALGORITHMS "
            f"({','.join(algorithms)})"
        )
    return algorithms


def _build_verifier(settings: Settings) -> _JwtVerifier:
    if settings.jwt_leeway_s < 0:
        raise ValueError("RCE_JWT_LEEWAY_S must be >= 0")
    keys = _load_key_set(settings)
    return _JwtVerifier(keys, _allowed_algorithms(settings, keys), settings)


@dataclass(frozen=True, slots=True)
class _Presented:
    """The credential a request carries: an API key, or a Bearer token (key or JWT)."""

    api_key: str | None = None
    bearer: str | None = None


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("unsupported Authorization header: send Authorization: Bearer")
    return token.strip()


def _presented(headers: Mapping[str, str], body_api_key: str | None, missing: str) -> _Presented:
    lowered = _lower_keys(headers)
    header_key = lowered.get("x-api-key", "").strip()
    authorization = lowered.get("authorization", "").strip()
    if authorization:
        return _Presented(bearer=_bearer(authorization))
    if header_key:
        return _Presented(api_key=header_key)
    if body_api_key is not None and body_api_key.strip():
        return _Presented(api_key=body_api_key.strip())
    raise AuthenticationFailed(missing)


class Authenticator:
    """Turns request credentials into a ``Caller``; built once from ``Settings``.

    Keys are parsed at construction; a bad key or algorithm list raises ``ValueError``
    naming the variable, so the service fails at start-up rather than per request.
    """

    def __init__(self, settings: Settings) -> None:
        self._mode = settings.auth_mode
        uses_keys = self._mode in ("api_key", "both")
        keys = settings.api_key_list() if uses_keys else []
        self._api_keys = tuple(key.encode() for key in keys)
        self._verifier = _build_verifier(settings) if self._mode in ("jwt", "both") else None
        self._warnings = _startup_warnings(self._mode, keys)

    @property
    def mode(self) -> str:
        """``api_key``, ``jwt``, ``both`` or ``none``."""
        return self._mode

    @property
    def accepts_api_keys(self) -> bool:
        """True when API keys are credentials here (``api_key`` or ``both``)."""
        return bool(self._api_keys)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things the operator must hear at start-up (e.g. ``none`` mode); log each."""
        return self._warnings

    def authenticate(self, headers: Mapping[str, str], body_api_key: str | None = None) -> Caller:
        """The caller a request's credentials prove; ``AuthenticationFailed`` otherwise.

        ``headers`` may be any mapping (names compared case-insensitively);
        ``body_api_key`` is the legacy ``LIBRECHAT_CODE_API_KEY`` body field, read only
        when no credential header is present.
        """
        if self._mode == "none":
            return Caller(KEY_TENANT, None)
        missing = _MISSING_JWT if self._verifier and not self._api_keys else _MISSING_ANY
        presented = _presented(headers, body_api_key, missing)
        if presented.bearer is not None:
            return self._bearer_caller(presented.bearer)
        return self._key_caller(presented.api_key or "")

    def _key_caller(self, key: str) -> Caller:
        if not self._api_keys:
            raise AuthenticationFailed(
                "API keys are not accepted: send Authorization: Bearer <JWT>"
            )
        if not self._is_api_key(key):
            raise AuthenticationFailed("invalid API key")
        return Caller(KEY_TENANT, None)

    def _bearer_caller(self, token: str) -> Caller:
        if self._api_keys and self._is_api_key(token):
            return Caller(KEY_TENANT, None)
        if self._verifier is not None and (_looks_like_jwt(token) or not self._api_keys):
            return self._verifier.verify(token)
        raise AuthenticationFailed("invalid API key")

    def _is_api_key(self, candidate: str) -> bool:
        """Constant-time over every configured key: no early exit reveals which matched."""
        # surrogatepass: a lone surrogate is a wrong key, not a crash.
        presented = candidate.encode("utf-8", "surrogatepass")
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


def _startup_warnings(mode: str, keys: list[str]) -> tuple[str, ...]:
    warnings = []
    if mode == "none":
        warnings.append(
            "RCE_AUTH_MODE=none: requests are accepted without credentials and all share "
            "the API-key tenant; run this only on a trusted, private network"
        )
    if DEFAULT_API_KEY in keys:
        warnings.append(
            "CUSTOM_RCE_API_KEY is the README placeholder; set a real key before any "
            "other host can reach this service"
        )
    return tuple(warnings)


def with_asserted_user(caller: Caller, *candidates: str | None) -> Caller:
    """Narrow a key caller to the first non-empty user the request asserts.

    Candidates, in the caller's order of preference: the ``User-Id`` header, the body
    ``user_id``, the query ``id`` when ``kind=user``, ``entity_id``. Only an API-key
    caller with no user yet is changed; a JWT caller's ``sub`` is never overridden.
    The value is trimmed and must be at most 256 printable characters
    (``InvalidRequest`` otherwise: silently dropping it would widen access).
    """
    if caller.tenant != KEY_TENANT or caller.user is not None:
        return caller
    for candidate in candidates:
        value = (candidate or "").strip()
        if value:
            if len(value) > MAX_IDENTITY_CHARS or not value.isprintable():
                raise InvalidRequest("the asserted user id must be 1-256 printable characters")
            return Caller(caller.tenant, value)
    return caller
