"""The one form revocations are logged and published in, and its one parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.models import Revocation


@given(st.sampled_from(["session", "family", "jti", "user", "redis"]), st.text())
def test_published_form_reads_back(kind: str, value: str) -> None:
    event = Revocation(kind, value)  # type: ignore[arg-type]
    assert Revocation.parse(str(event)) == event


@pytest.mark.parametrize("text", ["", "session", "sessions:abc", "token:abc", ":abc"])
def test_anything_else_is_not_a_revocation(text: str) -> None:
    assert Revocation.parse(text) is None
