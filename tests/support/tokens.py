"""Mint Bearer JWTs exactly as LibreChat does, and forge the ones it never would.

LibreChat (``packages/api/src/auth/codeapi.ts``) builds the token by hand: compact
``JSON.stringify`` of the header ``{alg, typ:'JWT', kid}`` and of the claims in a fixed
order, base64url without padding, then an Ed25519 (``EdDSA``, the default) or
RSA-SHA256 (``RS256``) signature over ``header.payload``. ``Signer.mint`` repeats that
byte for byte; the ``forge_*`` helpers build what an attacker would send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

DEFAULT_KID = "lc-codeapi-2026-05"
DEFAULT_ISSUER = "librechat"
DEFAULT_AUDIENCE = "codeapi"
DEFAULT_TTL_S = 300
DEFAULT_TENANT = "legacy"


def b64url(data: bytes) -> str:
    """base64url without padding, as ``Buffer.toString('base64url')``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Inverse of ``b64url``."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def js_json(value: Any) -> str:
    """``JSON.stringify(value)``: compact, insertion-ordered, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def segment(value: Mapping[str, Any]) -> str:
    """One JWT segment: ``base64url(JSON.stringify(value))``."""
    return b64url(js_json(dict(value)).encode())


def auth_context_hash(
    sub: str, tenant_id: str, role: str = "USER", principal_source: str = "librechat_jwt"
) -> str:
    """LibreChat's ``canonicalContextHash`` (no org, service or chc user)."""
    canonical = {
        "chc_user_id": "",
        "org_id": "",
        "principal_source": principal_source,
        "role": role,
        "service_id": "",
        "sub": sub,
        "tenant_id": tenant_id,
    }
    return hashlib.sha256(js_json(canonical).encode()).hexdigest()


def librechat_claims(
    sub: str = "user-1",
    tenant_id: str = DEFAULT_TENANT,
    *,
    now: int | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    iss: str = DEFAULT_ISSUER,
    aud: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """The claims ``buildClaims`` produces, in its order."""
    issued = int(time.time()) if now is None else now
    return {
        "iss": iss,
        "aud": aud,
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "role": "USER",
        "principal_source": "librechat_jwt",
        "auth_context_hash": auth_context_hash(sub, tenant_id),
    }


@dataclass
class Signer:
    """A LibreChat signing key (``CODEAPI_JWT_PRIVATE_KEY`` + ``CODEAPI_JWT_KID``)."""

    alg: str
    private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    kid: str = DEFAULT_KID
    defaults: dict[str, Any] = field(default_factory=dict)

    def sign(self, signing_input: bytes) -> bytes:
        """The raw signature LibreChat's ``cryptoSign`` makes."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(signing_input)

    def encode(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """Serialize and sign any header and claims, LibreChat's way."""
        signing_input = f"{segment(header)}.{segment(claims)}"
        return f"{signing_input}.{b64url(self.sign(signing_input.encode()))}"

    def header(self) -> dict[str, Any]:
        """``{alg, typ:'JWT', kid}``."""
        return {"alg": self.alg, "typ": "JWT", "kid": self.kid}

    def mint(
        self,
        sub: str = "user-1",
        tenant_id: str = DEFAULT_TENANT,
        *,
        claims: Mapping[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        header: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """A token as LibreChat mints it; ``claims``/``header`` override, ``drop`` removes."""
        body = librechat_claims(sub, tenant_id, **kwargs)
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return self.encode({**self.header(), **(header or {})}, body)

    def public_key(self) -> ed25519.Ed25519PublicKey | rsa.RSAPublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM, what ``RCE_JWT_PUBLIC_KEY`` takes."""
        return (
            self.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def public_jwk(self, *, with_kid: bool = True, with_alg: bool = True) -> dict[str, Any]:
        """The public JWK, with ``kid``/``alg``/``use`` as a JWKS publisher writes them."""
        key = self.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
        jwk["use"] = "sig"
        if with_kid:
            jwk["kid"] = self.kid
        if with_alg:
            jwk["alg"] = self.alg
        return jwk


def ed25519_signer(kid: str = DEFAULT_KID) -> Signer:
    """A fresh Ed25519 key (LibreChat's default ``EdDSA``)."""
    return Signer("EdDSA", ed25519.Ed25519PrivateKey.generate(), kid)


def rsa_signer(kid: str = DEFAULT_KID, bits: int = 2048) -> Signer:
    """A fresh RSA key (``CODEAPI_JWT_ALGORITHM=RS256``)."""
    return Signer("RS256", rsa.generate_private_key(public_exponent=65537, key_size=bits), kid)


def jwks(*signers: Signer) -> dict[str, Any]:
    """A JWKS document holding every signer's public key."""
    return {"keys": [signer.public_jwk() for signer in signers]}


def write_pem(path: Path, *signers: Signer) -> Path:
    """Write the signers' public keys as concatenated PEM blocks."""
    path.write_text("".join(signer.public_pem() for signer in signers))
    return path


def write_jwk(path: Path, signer: Signer) -> Path:
    """Write one public JWK."""
    path.write_text(json.dumps(signer.public_jwk()))
    return path


def write_jwks(path: Path, *signers: Signer) -> Path:
    """Write a JWKS document."""
    path.write_text(json.dumps(jwks(*signers)))
    return path


# --- forgeries ------------------------------------------------------------------


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def forge_alg_none(token: str) -> str:
    """The same claims with ``alg: none`` and an empty signature."""
    header, claims, _ = _segments(token)
    header["alg"] = "none"
    return f"{segment(header)}.{segment(claims)}."


def forge_hmac_with_public_key(signer: Signer, alg: str = "HS256", **kwargs: Any) -> str:
    """The classic key-confusion attack: HMAC keyed with the public key's PEM bytes."""
    header = {"alg": alg, "typ": "JWT", "kid": signer.kid}
    claims = librechat_claims(**kwargs)
    signing_input = f"{segment(header)}.{segment(claims)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(signer.public_pem().encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper_payload(token: str, **changes: Any) -> str:
    """Change claims but keep the original signature."""
    header, claims, signature = _segments(token)
    claims.update(changes)
    return f"{segment(header)}.{segment(claims)}.{signature}"


def expired(signer: Signer, age_s: int = 3600, **kwargs: Any) -> str:
    """A token whose ``exp`` passed ``age_s`` seconds ago."""
    return signer.mint(now=int(time.time()) - age_s - DEFAULT_TTL_S, **kwargs)


def not_yet_valid(signer: Signer, ahead_s: int = 3600, **kwargs: Any) -> str:
    """A token issued (and valid from) ``ahead_s`` seconds in the future."""
    return signer.mint(now=int(time.time()) + ahead_s, **kwargs)


def wrong_audience(signer: Signer, aud: str = "someone-else", **kwargs: Any) -> str:
    """A genuine token minted for another audience."""
    return signer.mint(aud=aud, **kwargs)


def wrong_issuer(signer: Signer, iss: str = "not-librechat", **kwargs: Any) -> str:
    """A genuine-looking token from another issuer."""
    return signer.mint(iss=iss, **kwargs)


def wrong_key(kid: str = DEFAULT_KID, **kwargs: Any) -> str:
    """A well-formed token signed by a key nobody configured, under a trusted ``kid``."""
    return ed25519_signer(kid).mint(**kwargs)
