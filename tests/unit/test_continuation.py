"""Continuation tokens: forged, altered, foreign and expired tokens are refused."""

from __future__ import annotations

import pytest

from core.continuation import Continuation, TokenSigner
from core.errors import AccessDenied, ContinuationExpired, InvalidRequest
from core.identity import Caller

ALICE = Caller("t", "alice")
BOB = Caller("t", "bob")


@pytest.fixture(name="signer")
def _signer() -> TokenSigner:
    return TokenSigner(b"s" * 32)


def _token(signer: TokenSigner, caller: Caller = ALICE, expires_at: float = 2000.0) -> str:
    return signer.sign(
        Continuation("rce-sbx-1", 3, signer.principal(caller), "sid", expires_at, {"k": [1, 2]})
    )


class TestTokenSigner:
    def test_round_trips_the_continuation(self, signer: TokenSigner) -> None:
        """A genuine token gives back what was signed."""
        got = signer.verify(_token(signer), ALICE, now=1000.0)
        assert (got.container, got.round, got.session_id, got.state) == (
            "rce-sbx-1",
            3,
            "sid",
            {"k": [1, 2]},
        )

    def test_refuses_a_token_signed_with_another_secret(self, signer: TokenSigner) -> None:
        """A token made with another key (a forgery) is a 400."""
        forged = _token(TokenSigner(b"x" * 32))
        with pytest.raises(InvalidRequest, match="not a valid token"):
            signer.verify(forged, ALICE, now=1000.0)

    def test_refuses_an_altered_payload(self, signer: TokenSigner) -> None:
        """Changing one character of the payload breaks the MAC."""
        payload, mac = _token(signer).split(".")
        altered = ("A" if payload[5] != "A" else "B").join((payload[:5], payload[6:])) + "." + mac
        with pytest.raises(InvalidRequest):
            signer.verify(altered, ALICE, now=1000.0)

    @pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "..", 42, None, "x" * 300_000 + ".y"])
    def test_refuses_junk(self, signer: TokenSigner, junk: object) -> None:
        """Anything that is not a token is a 400, never a 500."""
        with pytest.raises(InvalidRequest):
            signer.verify(junk, ALICE, now=1000.0)

    def test_refuses_another_callers_token(self, signer: TokenSigner) -> None:
        """A token is bound to the caller that started the run."""
        with pytest.raises(AccessDenied, match="another caller"):
            signer.verify(_token(signer, ALICE), BOB, now=1000.0)

    def test_refuses_an_expired_token(self, signer: TokenSigner) -> None:
        """Past its expiry a token is a 410 naming the wait cap."""
        with pytest.raises(ContinuationExpired, match="RCE_PTC_MAX_WAIT_S"):
            signer.verify(_token(signer, expires_at=999.0), ALICE, now=1000.0)

    def test_principal_is_per_secret_and_per_caller(self, signer: TokenSigner) -> None:
        """The principal digest tells callers apart and reveals nothing without the key."""
        assert signer.principal(ALICE) != signer.principal(BOB)
        assert signer.principal(ALICE) != TokenSigner(b"y" * 32).principal(ALICE)

    def test_short_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="16 bytes"):
            TokenSigner(b"short")
