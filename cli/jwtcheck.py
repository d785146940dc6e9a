"""``rce doctor --jwt``: say exactly why a token LibreChat sent would be refused.

Each rule the server applies is checked on its own (key id, algorithm, signature,
issuer, audience, expiry, not-before), so the answer names the mismatch instead of
the server's deliberately terse 401; the server's own verifier then has the last word.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from core.errors import AuthenticationFailed
from handler.auth import Authenticator
from handler.jwks import KeyConfigError, KeySet, key_set, parse_keys, read_key_file
from handler.settings import Settings

_KEY_FIX = (
    "set RCE_JWT_PUBLIC_KEY_FILE to the public half of LibreChat's CODEAPI_JWT_PRIVATE_KEY "
    "(docs/librechat.md)"
)


def _keys(settings: Settings) -> KeySet:
    sources = []
    if settings.jwt_public_key is not None:
        sources.append(parse_keys(settings.jwt_public_key.get_secret_value()))
    if settings.jwt_public_key_file:
        sources.append(read_key_file(settings.jwt_public_key_file))
    return key_set(sources)


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _claim_problems(claims: dict[str, Any], settings: Settings, now: float) -> list[str]:
    problems = []
    if claims.get("iss") != settings.jwt_issuer:
        problems.append(
            f"iss is {claims.get('iss')!r} but RCE_JWT_ISSUER is {settings.jwt_issuer!r}"
        )
    if settings.jwt_audience not in _as_list(claims.get("aud")):
        problems.append(
            f"aud is {claims.get('aud')!r} but RCE_JWT_AUDIENCE is {settings.jwt_audience!r}"
        )
    leeway = settings.jwt_leeway_s
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float):
        problems.append("the token has no exp claim")
    elif exp + leeway < now:
        problems.append(
            f"the token expired {int(now - exp)} s ago (LibreChat mints short-lived "
            "tokens: paste a fresh one; if it is fresh, the clocks differ)"
        )
    if isinstance(nbf, int | float) and nbf - leeway > now:
        problems.append(f"the token is not valid for another {int(nbf - now)} s (clock skew?)")
    return problems


def _signature_problem(token: str, alg: str, kid: str | None, keys: KeySet) -> str | None:
    pool = keys.for_kid(kid)
    if not pool:
        return f"its kid {kid!r} names none of our keys"
    fitting = [k.key for k in pool if k.fits(alg)]
    if not fitting:
        return f"none of our keys fits its algorithm {alg}"
    for key in fitting:
        try:
            jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
            return None
        except jwt_errors.InvalidSignatureError:
            continue
        except jwt_errors.PyJWTError as exc:
            return f"it does not decode: {exc}"
    return (
        f"its signature does not verify with any of our {len(fitting)} key(s): "
        "LibreChat signs with another key pair"
    )


def diagnose(token: str, settings: Settings, now: float | None = None) -> tuple[list[str], str]:
    """(problems, fix): an empty list means the server accepts the token."""
    token = token.strip()
    if settings.auth_mode not in ("jwt", "both"):
        return [f"RCE_AUTH_MODE={settings.auth_mode} accepts no JWT"], (
            f"set RCE_AUTH_MODE=both and {_KEY_FIX.removeprefix('set ')}"
        )
    try:
        keys = _keys(settings)
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except KeyConfigError as exc:
        return [f"our JWT key does not load: {exc}"], _KEY_FIX
    except jwt_errors.PyJWTError as exc:
        return [f"not a JWT: {exc}"], "paste the whole token (three dot-separated parts)"
    alg, kid = str(header.get("alg")), header.get("kid")
    if alg not in settings.jwt_algorithm_list():
        return [f"its alg {alg} is not in RCE_JWT_ALGORITHMS ({settings.jwt_algorithms})"], (
            f"add {alg} to RCE_JWT_ALGORITHMS, or set LibreChat's CODEAPI_JWT_ALGORITHM"
        )
    problems = []
    signature = _signature_problem(token, alg, kid if isinstance(kid, str) else None, keys)
    if signature:
        problems.append(signature)
    problems += _claim_problems(claims, settings, time.time() if now is None else now)
    if not problems:
        try:
            Authenticator(settings).authenticate({"authorization": f"Bearer {token}"})
        except AuthenticationFailed as exc:
            problems.append(f"the server refuses it: {exc.message}")
    fix = _KEY_FIX if signature else "align the settings named above with LibreChat's"
    return problems, fix
