"""Authentication: API keys, LibreChat's Bearer JWTs, and the asserted-user rules."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from starlette.datastructures import Headers

from core.errors import AuthenticationFailed, InvalidRequest
from core.identity import KEY_TENANT, Caller, FileKind, Owner
from handler.auth import Authenticator, with_asserted_user
from handler.settings import Settings
from tests.support import tokens
from tests.support.tokens import Signer, ed25519_signer, rsa_signer

KEY = "k-" + "a" * 40
OTHER_KEY = "k-" + "b" * 40


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_auth(**kwargs: Any) -> Authenticator:
    return Authenticator(Settings(auth_mode="api_key", api_keys=KEY, **kwargs))


def jwt_auth(*signers: Signer, mode: str = "jwt", **kwargs: Any) -> Authenticator:
    if signers and "jwt_public_key" not in kwargs and "jwt_public_key_file" not in kwargs:
        kwargs["jwt_public_key"] = "".join(s.public_pem() for s in signers)
    return Authenticator(Settings(auth_mode=mode, api_keys=KEY, **kwargs))


@pytest.fixture(name="signer", scope="module")
def _signer() -> Signer:
    return ed25519_signer()


@pytest.fixture(name="rs256", scope="module")
def _rs256() -> Signer:
    return rsa_signer()


@pytest.fixture(name="auth", scope="module")
def _auth(signer: Signer) -> Authenticator:
    return jwt_auth(signer)


def rejects(auth: Authenticator, headers: dict[str, str], match: str, **kw: Any) -> None:
    with pytest.raises(AuthenticationFailed, match=match):
        auth.authenticate(headers, **kw)


class TestLibreChatTokens:
    """The test minter produces what LibreChat's codeapi.ts produces."""

    def test_header_is_librechats_compact_json(self, signer: Signer) -> None:
        """Header bytes are JSON.stringify({alg, typ:'JWT', kid}) with the default kid."""
        header = tokens.b64url_decode(signer.mint().split(".")[0])
        assert header == b'{"alg":"EdDSA","typ":"JWT","kid":"lc-codeapi-2026-05"}'

    def test_claims_in_librechat_order(self, signer: Signer) -> None:
        """Claims come in buildClaims' order and live 300 s."""
        claims = json.loads(tokens.b64url_decode(signer.mint().split(".")[1]))
        assert list(claims) == [
            "iss", "aud", "sub", "iat", "nbf", "exp", "jti",
            "tenant_id", "role", "principal_source", "auth_context_hash",
        ]  # fmt: skip
        assert (claims["iss"], claims["aud"]) == ("librechat", "codeapi")
        assert claims["exp"] - claims["iat"] == 300
        assert claims["nbf"] == claims["iat"]

    def test_independent_library_verifies_them(self, signer: Signer, rs256: Signer) -> None:
        """pyjwt, knowing nothing of our code, accepts both EdDSA and RS256 tokens."""
        for s in (signer, rs256):
            claims = jwt.decode(s.mint(), s.public_key(), [s.alg], audience="codeapi")
            assert claims["sub"] == "user-1"


class TestApiKeyMode:
    """RCE_AUTH_MODE=api_key: the legacy LibreChat contract."""

    @pytest.mark.parametrize("name", ["X-API-Key", "x-api-key", "X-Api-Key", "X-API-KEY"])
    def test_x_api_key_header_any_case(self, name: str) -> None:
        """X-API-Key is found whatever the case of its name."""
        assert key_auth().authenticate({name: KEY}) == Caller(KEY_TENANT, None)

    def test_starlette_headers(self) -> None:
        """A starlette Headers object works as well as a dict."""
        headers = Headers(raw=[(b"x-api-key", KEY.encode())])
        assert key_auth().authenticate(headers) == Caller(KEY_TENANT, None)

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    def test_bearer_api_key(self, scheme: str) -> None:
        """Authorization: Bearer <key> is a key credential too."""
        auth = key_auth()
        assert auth.authenticate({"authorization": f"{scheme} {KEY}"}) == Caller(KEY_TENANT, None)

    def test_body_api_key(self) -> None:
        """Old clients sent LIBRECHAT_CODE_API_KEY in the JSON body."""
        assert key_auth().authenticate({}, body_api_key=KEY) == Caller(KEY_TENANT, None)

    def test_header_wins_over_body(self) -> None:
        """A wrong header key is not rescued by a right body key."""
        rejects(key_auth(), {"X-API-Key": "wrong"}, "invalid API key", body_api_key=KEY)

    def test_every_configured_key_works(self) -> None:
        """Key rotation: each comma-separated key is accepted."""
        auth = Authenticator(Settings(api_keys=f"{KEY}, {OTHER_KEY}"))
        for key in (KEY, OTHER_KEY):
            assert auth.authenticate({"X-API-Key": key}) == Caller(KEY_TENANT, None)

    @pytest.mark.parametrize("wrong", ["wrong", KEY[:-1], KEY + "x", KEY.upper(), "é" + KEY])
    def test_wrong_key_is_refused_without_echo(self, wrong: str) -> None:
        """Near misses fail, and the message never repeats what was sent."""
        with pytest.raises(AuthenticationFailed, match="^invalid API key$") as info:
            key_auth().authenticate({"X-API-Key": wrong})
        assert wrong not in str(info.value)

    @pytest.mark.parametrize("headers", [{}, {"X-API-Key": "  "}, {"Other": KEY}])
    def test_missing_credentials(self, headers: dict[str, str]) -> None:
        """No credential at all says what to send."""
        rejects(key_auth(), headers, "missing credentials: send X-API-Key or Authorization: Bearer")

    def test_jwt_is_not_a_key(self, signer: Signer) -> None:
        """Even a genuine token is refused when only keys are accepted."""
        rejects(key_auth(jwt_public_key=signer.public_pem()), bearer(signer.mint()), "API key")

    def test_authorization_counts_when_both_are_sent(self) -> None:
        """With X-API-Key and Authorization together, Authorization decides."""
        assert key_auth().authenticate({"X-API-Key": "wrong", **bearer(KEY)}) == Caller(
            KEY_TENANT, None
        )
        rejects(key_auth(), {"X-API-Key": KEY, **bearer("wrong")}, "invalid API key")

    @pytest.mark.parametrize("value", [f"Basic {KEY}", KEY, "Bearer", "Bearer   "])
    def test_other_authorization_schemes(self, value: str) -> None:
        """Only the Bearer scheme is understood."""
        rejects(key_auth(), {"Authorization": value}, "send Authorization: Bearer")

    def test_invalid_jwt_settings_are_unused(self) -> None:
        """In api_key mode the JWT key variables are not read."""
        auth = key_auth(jwt_public_key="not a key")
        assert auth.authenticate({"X-API-Key": KEY}) == Caller(KEY_TENANT, None)


class TestJwtMode:
    """RCE_AUTH_MODE=jwt: tokens minted by current LibreChat."""

    def test_librechat_token(self, auth: Authenticator, signer: Signer) -> None:
        """A LibreChat token names (jwt:tenant_id, sub)."""
        caller = auth.authenticate(bearer(signer.mint("u-42", "acme")))
        assert caller == Caller("jwt:acme", "u-42")

    def test_absent_tenant_is_legacy(self, auth: Authenticator, signer: Signer) -> None:
        """Without tenant_id the tenant is LibreChat's single-tenant default, legacy."""
        token = signer.mint(drop=("tenant_id",))
        assert auth.authenticate(bearer(token)) == Caller("jwt:legacy", "user-1")

    def test_optional_claims_are_ignored(self, auth: Authenticator, signer: Signer) -> None:
        """org_id, plan_id, code_worker_id and unknown claims do not matter."""
        extra = {"org_id": "o", "plan_id": "p", "code_worker_id": "w", "x": [1]}
        assert auth.authenticate(bearer(signer.mint(claims=extra))).user == "user-1"

    def test_typ_may_be_absent(self, auth: Authenticator, signer: Signer) -> None:
        """typ is optional in a JWS header."""
        header = {"alg": "EdDSA", "kid": signer.kid}
        token = signer.encode(header, tokens.librechat_claims())
        assert auth.authenticate(bearer(token)).user == "user-1"

    def test_api_key_refused(self, auth: Authenticator) -> None:
        """Keys are not credentials in jwt mode, whichever way they come."""
        rejects(auth, {"X-API-Key": KEY}, "API keys are not accepted")
        rejects(auth, {}, "API keys are not accepted", body_api_key=KEY)
        rejects(auth, bearer(KEY), "malformed token")

    def test_missing_credentials(self, auth: Authenticator) -> None:
        """The message names the only credential that would work."""
        rejects(auth, {}, r"missing credentials: send Authorization: Bearer <JWT>")

    @pytest.mark.parametrize("token", ["a.b.c", "x" * 20000, "...", "e30.e30"])
    def test_malformed(self, auth: Authenticator, token: str) -> None:
        """Garbage in the token slot is malformed, not a crash."""
        rejects(auth, bearer(token), "malformed token")

    def test_alg_none(self, auth: Authenticator, signer: Signer) -> None:
        """alg=none is never accepted, nor a header without alg."""
        rejects(auth, bearer(tokens.forge_alg_none(signer.mint())), "algorithm not allowed")
        rejects(auth, bearer("e30.e30.e30"), "algorithm not allowed")

    @pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
    def test_hmac_signed_with_public_key(self, signer: Signer, alg: str) -> None:
        """Key confusion fails, even when the settings list HMAC algorithms."""
        auth = jwt_auth(signer, jwt_algorithms=f"{alg},EdDSA")
        forged = tokens.forge_hmac_with_public_key(signer, alg)
        rejects(auth, bearer(forged), "token algorithm not allowed")

    def test_tampered_payload(self, auth: Authenticator, signer: Signer) -> None:
        """Changing a claim breaks the signature."""
        forged = tokens.tamper_payload(signer.mint("alice"), sub="bob")
        rejects(auth, bearer(forged), "invalid token signature")

    def test_wrong_key(self, auth: Authenticator) -> None:
        """A token under the trusted kid but signed by another key fails."""
        rejects(auth, bearer(tokens.wrong_key()), "invalid token signature")

    def test_embedded_jwk_is_ignored(self, auth: Authenticator) -> None:
        """A key the token carries in its own header is never trusted."""
        attacker = ed25519_signer()
        token = attacker.mint(header={"jwk": attacker.public_jwk()})
        rejects(auth, bearer(token), "invalid token signature")

    def test_expired(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(tokens.expired(signer)), "token expired")

    def test_not_yet_valid(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(tokens.not_yet_valid(signer)), "token not yet valid")

    def test_nbf_in_future(self, auth: Authenticator, signer: Signer) -> None:
        """nbf is checked on its own, not only iat."""
        token = signer.mint(claims={"nbf": int(time.time()) + 600})
        rejects(auth, bearer(token), "token not yet valid")

    def test_wrong_audience(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(tokens.wrong_audience(signer)), "token audience mismatch")

    def test_audience_list(self, auth: Authenticator, signer: Signer) -> None:
        """An aud array that contains ours is accepted."""
        token = signer.mint(claims={"aud": ["other", "codeapi"]})
        assert auth.authenticate(bearer(token)).user == "user-1"

    def test_wrong_issuer(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(tokens.wrong_issuer(signer)), "token issuer mismatch")

    def test_configured_issuer_and_audience(self, signer: Signer) -> None:
        """CODEAPI_JWT_ISSUER/AUDIENCE on LibreChat's side match RCE_JWT_ISSUER/AUDIENCE."""
        auth = jwt_auth(signer, jwt_issuer="lc-prod", jwt_audience="rce")
        assert auth.authenticate(bearer(signer.mint(iss="lc-prod", aud="rce"))).user
        rejects(auth, bearer(signer.mint()), "token issuer mismatch")

    @pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
    def test_required_claims(self, auth: Authenticator, signer: Signer, claim: str) -> None:
        rejects(auth, bearer(signer.mint(drop=(claim,))), f"token lacks the '{claim}' claim")

    @pytest.mark.parametrize("sub", ["", "   ", "a\nb", "x" * 257])
    def test_bad_sub(self, auth: Authenticator, signer: Signer, sub: str) -> None:
        rejects(auth, bearer(signer.mint(sub)), "token sub is invalid")

    def test_non_string_sub(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(signer.mint(claims={"sub": 42})), "token sub is invalid")

    @pytest.mark.parametrize("tenant", ["", 7, None, "t\x00", "t" * 257])
    def test_bad_tenant(self, auth: Authenticator, signer: Signer, tenant: Any) -> None:
        token = signer.mint(claims={"tenant_id": tenant})
        rejects(auth, bearer(token), "token tenant_id is invalid")

    def test_lifetime_cap(self, auth: Authenticator, signer: Signer) -> None:
        """LibreChat never mints a token living longer than 300 s."""
        rejects(auth, bearer(signer.mint(ttl_s=301)), "token lifetime exceeds 300 s")

    @pytest.mark.parametrize("typ", ["at+jwt", 1])
    def test_typ_other_than_jwt(self, auth: Authenticator, signer: Signer, typ: Any) -> None:
        rejects(auth, bearer(signer.mint(header={"typ": typ})), "typ must be JWT")

    def test_kid_not_a_string(self, auth: Authenticator, signer: Signer) -> None:
        rejects(auth, bearer(signer.mint(header={"kid": 5})), "malformed token")


class TestLeeway:
    """exp and nbf are checked with RCE_JWT_LEEWAY_S of slack for clock skew."""

    def test_recently_expired_within_leeway(self, signer: Signer) -> None:
        token = signer.mint(now=int(time.time()) - 310)  # expired 10 s ago
        assert jwt_auth(signer, jwt_leeway_s=30).authenticate(bearer(token)).user
        rejects(jwt_auth(signer, jwt_leeway_s=0), bearer(token), "token expired")

    def test_slightly_future_within_leeway(self, signer: Signer) -> None:
        token = signer.mint(now=int(time.time()) + 10)
        assert jwt_auth(signer, jwt_leeway_s=30).authenticate(bearer(token)).user
        rejects(jwt_auth(signer, jwt_leeway_s=0), bearer(token), "token not yet valid")

    def test_negative_leeway_is_a_config_error(self, signer: Signer) -> None:
        with pytest.raises(ValueError, match="RCE_JWT_LEEWAY_S"):
            jwt_auth(signer, jwt_leeway_s=-1)


class TestRs256:
    """CODEAPI_JWT_ALGORITHM=RS256."""

    def test_rs256_token(self, rs256: Signer) -> None:
        assert jwt_auth(rs256).authenticate(bearer(rs256.mint())) == Caller("jwt:legacy", "user-1")

    def test_rs256_not_in_allowed_list(self, rs256: Signer, signer: Signer) -> None:
        auth = jwt_auth(rs256, signer, jwt_algorithms="EdDSA")
        rejects(auth, bearer(rs256.mint()), "token algorithm not allowed")

    def test_rs256_token_against_ed25519_key(self, signer: Signer) -> None:
        """A token whose alg does not fit the configured key is refused."""
        rejects(jwt_auth(signer), bearer(rsa_signer().mint()), "does not match the key")

    def test_jwk_alg_restricts_the_key(self, rs256: Signer) -> None:
        """A JWK with alg RS256 does not verify a PS256 token by the same key."""
        jwk = json.dumps(rs256.public_jwk())
        auth = jwt_auth(jwt_public_key=jwk, jwt_algorithms="RS256,PS256")
        token = jwt.encode(
            tokens.librechat_claims(), rs256.private_key, "PS256", {"kid": rs256.kid}
        )
        rejects(auth, bearer(token), "does not match the key")


class TestKeyLoading:
    """RCE_JWT_PUBLIC_KEY and RCE_JWT_PUBLIC_KEY_FILE take PEM, JWK or JWKS."""

    def _accepts(self, auth: Authenticator, *signers: Signer) -> None:
        for s in signers:
            assert auth.authenticate(bearer(s.mint(s.kid))).user == s.kid

    def test_pem_text(self, signer: Signer) -> None:
        self._accepts(jwt_auth(jwt_public_key=signer.public_pem()), signer)

    def test_pem_with_escaped_newlines(self, signer: Signer) -> None:
        """A PEM pasted into an env file as one line with literal \\n works."""
        one_line = signer.public_pem().replace("\n", "\\n")
        self._accepts(jwt_auth(jwt_public_key=one_line), signer)

    def test_jwk_text(self, signer: Signer) -> None:
        self._accepts(jwt_auth(jwt_public_key=json.dumps(signer.public_jwk())), signer)

    def test_jwks_text(self, signer: Signer, rs256: Signer) -> None:
        a, b = ed25519_signer("a"), rsa_signer("b")
        self._accepts(jwt_auth(jwt_public_key=json.dumps(tokens.jwks(a, b))), a, b)

    def test_files(self, tmp_path: Path, signer: Signer) -> None:
        """Each format loads from a file as well as from text."""
        for path in (
            tokens.write_pem(tmp_path / "k.pem", signer),
            tokens.write_jwk(tmp_path / "k.jwk", signer),
            tokens.write_jwks(tmp_path / "k.jwks", signer),
        ):
            self._accepts(jwt_auth(jwt_public_key_file=str(path)), signer)

    def test_certificate(self, signer: Signer) -> None:
        """An X.509 certificate's public key is accepted."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "librechat")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(signer.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(signer.private_key, None)
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self._accepts(jwt_auth(jwt_public_key=pem), signer)

    def test_rotation_with_several_pems(self, signer: Signer) -> None:
        """Old and new keys under the same kid both verify during a rotation."""
        old, new = ed25519_signer(), ed25519_signer()
        auth = jwt_auth(old, new)
        self._accepts(auth, old, new)
        rejects(auth, bearer(signer.mint()), "invalid token signature")

    def test_text_and_file_together(self, tmp_path: Path) -> None:
        """Keys from the variable and the file are both trusted."""
        a, b = ed25519_signer(), ed25519_signer()
        path = tokens.write_jwks(tmp_path / "k.json", b)
        self._accepts(jwt_auth(jwt_public_key=a.public_pem(), jwt_public_key_file=str(path)), a, b)

    def test_jwks_picks_by_kid(self) -> None:
        """With several kids, a token is checked only against its own kid's key."""
        a, b = ed25519_signer("kid-a"), ed25519_signer("kid-b")
        auth = jwt_auth(jwt_public_key=json.dumps(tokens.jwks(a, b)))
        self._accepts(auth, a, b)
        swapped = a.mint(header={"kid": "kid-b"})
        rejects(auth, bearer(swapped), "invalid token signature")
        rejects(auth, bearer(ed25519_signer("kid-c").mint()), r"unknown token key id \(kid\)")

    def test_jwks_skips_encryption_keys(self) -> None:
        a, b = ed25519_signer("a"), ed25519_signer("b")
        doc = tokens.jwks(a, b)
        doc["keys"][1]["use"] = "enc"
        auth = jwt_auth(jwt_public_key=json.dumps(doc))
        self._accepts(auth, a)
        rejects(auth, bearer(b.mint()), "unknown token key id")

    def test_jwk_without_kid_accepts_any_kid(self, signer: Signer) -> None:
        """An unnamed key (PEM, or JWK without kid) verifies whatever kid LibreChat uses."""
        jwk = json.dumps(signer.public_jwk(with_kid=False, with_alg=False))
        auth = jwt_auth(jwt_public_key=jwk)
        assert auth.authenticate(bearer(signer.mint(header={"kid": "custom"}))).user


def _private_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _small_rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class TestKeyConfigErrors:
    """A bad key fails at construction, naming the variable and never echoing the key."""

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("SECRET-garbage", "no PEM public key block"),
            ("-----BEGIN PUBLIC KEY-----\nSECRET\n-----END PUBLIC KEY-----", "not a valid"),
            ("{SECRET", "does not parse"),
            ('{"kty": "oct", "k": "SECRET"}', "private or symmetric"),
            ('{"kty": "OKP", "crv": "Ed25519", "x": "SECRET", "d": "SECRET"}', "private"),
            ('{"kty": "XYZ", "x": "SECRET"}', "unsupported kty"),
            ('{"kty": "OKP", "crv": "Ed25519", "x": "SECRET"}', "not a valid public key"),
            ('{"kty": "RSA", "alg": "HS256", "n": "SECRET", "e": "AQAB"}', "alg"),
            ('{"keys": "SECRET"}', "'keys' array"),
            ('{"keys": []}', "no public signing key"),
            ('["SECRET"]', "JSON object"),
        ],
    )
    def test_invalid_key_text(self, value: str, reason: str) -> None:
        with pytest.raises(ValueError, match=f"RCE_JWT_PUBLIC_KEY: .*{reason}") as info:
            jwt_auth(jwt_public_key=value)
        assert "SECRET" not in str(info.value)

    def test_private_pem(self) -> None:
        """LibreChat's private key does not belong here."""
        with pytest.raises(ValueError, match="RCE_JWT_PUBLIC_KEY: no PEM public key"):
            jwt_auth(jwt_public_key=_private_pem())

    def test_short_rsa_key(self) -> None:
        with pytest.raises(ValueError, match="at least 2048"):
            jwt_auth(jwt_public_key=_small_rsa_pem())

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="RCE_JWT_PUBLIC_KEY_FILE: cannot read"):
            jwt_auth(jwt_public_key_file=str(tmp_path / "absent.pem"))

    def test_no_asymmetric_algorithm(self, signer: Signer) -> None:
        with pytest.raises(ValueError, match="RCE_JWT_ALGORITHMS"):
            jwt_auth(signer, jwt_algorithms="HS256,none")

    def test_no_key_fits_the_algorithms(self, rs256: Signer) -> None:
        with pytest.raises(ValueError, match="no key fits RCE_JWT_ALGORITHMS"):
            jwt_auth(rs256, jwt_algorithms="EdDSA")


class TestBothMode:
    """RCE_AUTH_MODE=both: legacy keys and current LibreChat tokens side by side."""

    @pytest.fixture(name="both", scope="class")
    def _both(self, signer: Signer) -> Authenticator:
        return jwt_auth(signer, mode="both")

    def test_key_and_token(self, both: Authenticator, signer: Signer) -> None:
        assert both.authenticate({"X-API-Key": KEY}) == Caller(KEY_TENANT, None)
        assert both.authenticate(bearer(KEY)) == Caller(KEY_TENANT, None)
        assert both.authenticate({}, body_api_key=KEY) == Caller(KEY_TENANT, None)
        assert both.authenticate(bearer(signer.mint())) == Caller("jwt:legacy", "user-1")

    def test_token_errors_are_token_errors(self, both: Authenticator, signer: Signer) -> None:
        rejects(both, bearer(tokens.expired(signer)), "token expired")

    def test_neither(self, both: Authenticator) -> None:
        rejects(both, bearer("wrong"), "invalid API key")
        rejects(both, {}, "missing credentials: send X-API-Key or Authorization: Bearer")

    def test_key_and_token_together(self, both: Authenticator, signer: Signer) -> None:
        """LibreChat's provision service sends both: the token's identity wins."""
        headers = {"X-API-Key": KEY, **bearer(signer.mint())}
        assert both.authenticate(headers) == Caller("jwt:legacy", "user-1")
        rejects(both, {"X-API-Key": KEY, **bearer(tokens.expired(signer))}, "token expired")


class TestNoneMode:
    """RCE_AUTH_MODE=none: a trusted network, loudly announced."""

    def test_everyone_is_the_key_tenant(self) -> None:
        auth = Authenticator(Settings(auth_mode="none"))
        for headers in ({}, {"X-API-Key": "anything"}, bearer("a.b.c")):
            assert auth.authenticate(headers) == Caller(KEY_TENANT, None)

    def test_warns(self) -> None:
        (warning,) = Authenticator(Settings(auth_mode="none", api_keys=KEY)).warnings
        assert "RCE_AUTH_MODE=none" in warning

    def test_placeholder_key_warns_and_real_key_does_not(self) -> None:
        assert any("placeholder" in w for w in Authenticator(Settings()).warnings)
        assert key_auth().warnings == ()


class TestWithAssertedUser:
    """Key callers may name the user they act for; JWT callers may not."""

    KEY_CALLER = Caller(KEY_TENANT, None)

    def test_first_non_empty_candidate_trimmed(self) -> None:
        caller = with_asserted_user(self.KEY_CALLER, None, "", "  ", " u1 ", "u2")
        assert caller == Caller(KEY_TENANT, "u1")

    def test_nothing_asserted(self) -> None:
        assert with_asserted_user(self.KEY_CALLER) is self.KEY_CALLER
        assert with_asserted_user(self.KEY_CALLER, None, " ") is self.KEY_CALLER

    def test_jwt_caller_never_changes(self) -> None:
        caller = Caller("jwt:legacy", "alice")
        assert with_asserted_user(caller, "bob") is caller

    def test_already_narrowed_key_caller_keeps_its_user(self) -> None:
        caller = Caller(KEY_TENANT, "alice")
        assert with_asserted_user(caller, "bob") is caller

    def test_length_limit(self) -> None:
        assert with_asserted_user(self.KEY_CALLER, "u" * 256).user == "u" * 256
        with pytest.raises(InvalidRequest, match="1-256 printable"):
            with_asserted_user(self.KEY_CALLER, "u" * 257)

    @pytest.mark.parametrize("value", ["a\nb", "a\x00b", "a\u200bb"])
    def test_unprintable(self, value: str) -> None:
        """A bad value is an error, not skipped: skipping would widen access."""
        with pytest.raises(InvalidRequest):
            with_asserted_user(self.KEY_CALLER, value, "fallback")


class TestTenantSeparation:
    """No JWT can reach the API-key tenant, whatever tenant_id it carries."""

    def test_tenant_key_is_prefixed(self, auth: Authenticator, signer: Signer) -> None:
        caller = auth.authenticate(bearer(signer.mint("u", KEY_TENANT)))
        assert caller == Caller("jwt:key", "u")
        assert not caller.may_access(Owner(KEY_TENANT, ""), FileKind.AGENT)
        assert not caller.may_access(Owner(KEY_TENANT, "u"), FileKind.USER)

    def test_same_user_name_in_both_worlds(self, signer: Signer) -> None:
        """A key caller asserting "u" and a JWT for sub "u" own different files."""
        both = jwt_auth(signer, mode="both")
        key_caller = with_asserted_user(both.authenticate({"X-API-Key": KEY}), "u")
        jwt_caller = both.authenticate(bearer(signer.mint("u")))
        assert not jwt_caller.may_access(key_caller.as_owner(), FileKind.USER)
        assert not key_caller.may_access(jwt_caller.as_owner(), FileKind.USER)

    def test_tenants_are_separate(self, auth: Authenticator, signer: Signer) -> None:
        a = auth.authenticate(bearer(signer.mint("u", "tenant-a")))
        b = auth.authenticate(bearer(signer.mint("u", "tenant-b")))
        assert not a.may_access(b.as_owner(), FileKind.AGENT)


def test_rs256_is_pkcs1v15_sha256(rs256: Signer) -> None:
    """RS256 here is RSA-SHA256 with PKCS#1 v1.5, as Node's crypto.sign makes it."""
    head, body, sig = rs256.mint().split(".")
    public = rs256.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    signed = f"{head}.{body}".encode()
    public.verify(tokens.b64url_decode(sig), signed, padding.PKCS1v15(), hashes.SHA256())
