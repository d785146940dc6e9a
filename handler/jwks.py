"""Public keys that verify LibreChat's Bearer JWTs, parsed once at start-up.

A key source is PEM text (one or more ``-----BEGIN PUBLIC KEY-----`` blocks or
certificates), one JWK, or a JWKS document (``{"keys": [...]}``). Only public,
asymmetric keys are accepted: a symmetric (``oct``) JWK or a private key is refused,
so an HMAC token can never be verified with a public key's bytes.

A JWK that names a ``kid`` only verifies tokens with that ``kid``; a key without one
(any PEM key) may verify any token, after the keys named by its ``kid``. A JWK's ``alg``,
when present, restricts the key to that algorithm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

PublicKey: TypeAlias = (
    ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
)
_PUBLIC_KEY_TYPES = (
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
)

#: The algorithms a verifier may ever use, and the key types each one needs.
ASYMMETRIC_ALGORITHMS: dict[str, tuple[type[Any], ...]] = {
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
    "RS256": (rsa.RSAPublicKey,),
    "RS384": (rsa.RSAPublicKey,),
    "RS512": (rsa.RSAPublicKey,),
    "PS256": (rsa.RSAPublicKey,),
    "ES256": (ec.EllipticCurvePublicKey,),
}
_MIN_RSA_BITS = 2048
_PEM_BLOCK_RE = re.compile(
    r"-----BEGIN (PUBLIC KEY|RSA PUBLIC KEY|CERTIFICATE)-----.+?-----END \1-----", re.DOTALL
)
_JWK_LOADERS = {
    "RSA": RSAAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
}


class KeyConfigError(ValueError):
    """A key source is unreadable or holds something other than public signing keys."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key, with the ``kid`` and ``alg`` it is bound to (None: any)."""

    key: PublicKey
    kid: str | None = None
    alg: str | None = None

    def fits(self, alg: str) -> bool:
        """True when this key can verify a token signed with ``alg``."""
        if self.alg is not None and self.alg != alg:
            return False
        key_types = ASYMMETRIC_ALGORITHMS.get(alg, ())
        if not isinstance(self.key, key_types):
            return False
        if alg == "ES256" and isinstance(self.key, ec.EllipticCurvePublicKey):
            return isinstance(self.key.curve, ec.SECP256R1)
        return True


@dataclass(frozen=True, slots=True)
class KeySet:
    """Every configured verification key."""

    keys: tuple[VerificationKey, ...]

    def for_kid(self, kid: str | None) -> list[VerificationKey]:
        """Keys that may verify a token with this ``kid``: those named so, then unnamed."""
        named = [k for k in self.keys if k.kid is not None and k.kid == kid]
        return named + [k for k in self.keys if k.kid is None]


def _checked(key: object) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise KeyConfigError(f"an RSA key has {key.key_size} bits; at least 2048 are required")
    if isinstance(key, _PUBLIC_KEY_TYPES):
        return key
    raise KeyConfigError(f"a {type(key).__name__} is not a public signing key we accept")


def _pem_block_key(block: str) -> PublicKey:
    data = block.encode()
    if "CERTIFICATE" in block.split("\n", 1)[0]:
        return _checked(x509.load_pem_x509_certificate(data).public_key())
    return _checked(load_pem_public_key(data))


def _pem_keys(text: str) -> Iterator[VerificationKey]:
    blocks = [m.group(0) for m in _PEM_BLOCK_RE.finditer(text)]
    if not blocks:
        raise KeyConfigError("no PEM public key block found (a private key is never accepted)")
    for block in blocks:
        try:
            yield VerificationKey(_pem_block_key(block))
        except ValueError as exc:
            if isinstance(exc, KeyConfigError):
                raise
            raise KeyConfigError("a PEM block is not a valid public key") from exc


def _jwk_key(jwk: object) -> VerificationKey:
    if not isinstance(jwk, dict):
        raise KeyConfigError("a JWK must be a JSON object")
    kty, kid, alg = jwk.get("kty"), jwk.get("kid"), jwk.get("alg")
    if "d" in jwk or kty == "oct":
        raise KeyConfigError("a JWK holds a private or symmetric key; give the public key only")
    loader = _JWK_LOADERS.get(kty) if isinstance(kty, str) else None
    if loader is None:
        raise KeyConfigError("a JWK has an unsupported kty (use OKP, RSA or EC)")
    if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
        raise KeyConfigError("a JWK names an alg that is not an accepted asymmetric algorithm")
    if kid is not None and not isinstance(kid, str):
        raise KeyConfigError("a JWK kid must be a string")
    try:
        key = _checked(loader(jwk))
    except (PyJWTError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, KeyConfigError):
            raise
        raise KeyConfigError(f"a {kty} JWK is not a valid public key") from exc
    return VerificationKey(key, kid, alg)


def _is_signing_jwk(jwk: object) -> bool:
    return not (isinstance(jwk, dict) and jwk.get("use", "sig") != "sig")


def _json_keys(text: str) -> Iterator[VerificationKey]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyConfigError("the text starts like JSON but does not parse") from exc
    if isinstance(document, dict) and "keys" in document:
        entries = document["keys"]
        if not isinstance(entries, list):
            raise KeyConfigError("a JWKS must hold a 'keys' array")
        yield from (_jwk_key(jwk) for jwk in entries if _is_signing_jwk(jwk))
    else:
        yield _jwk_key(document)


def parse_keys(text: str) -> list[VerificationKey]:
    """Parse PEM, JWK or JWKS text (literal ``\\n`` escapes, as env files carry, work too).

    Raises ``KeyConfigError`` (a ``ValueError``) saying what is wrong, never echoing
    the text.
    """
    cleaned = text.replace("\\n", "\n").strip()
    is_json = cleaned.startswith(("{", "["))
    parsed = list(_json_keys(cleaned) if is_json else _pem_keys(cleaned))
    if not parsed:
        raise KeyConfigError("no public signing key found")
    return parsed


def read_key_file(path: str) -> list[VerificationKey]:
    """Parse a PEM, JWK or JWKS file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyConfigError(f"cannot read {path}: {type(exc).__name__}") from exc
    return parse_keys(text)


def key_set(sources: Iterable[list[VerificationKey]]) -> KeySet:
    """Merge parsed sources into one ``KeySet``."""
    return KeySet(tuple(key for source in sources for key in source))
