"""The admin service's pure parts: opaque cursors, page sizes, roles (hypothesis for the
parsers: whatever a client sends, a value or ``InvalidRequest``, never anything else)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.core.users import (
    MAX_PAGE,
    clean_roles,
    decode_cursor,
    encode_cursor,
    page_limit,
)
from authgate.errors import InvalidRequest

KEYS = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Cf")),
               max_size=150)


@given(KEYS, st.sampled_from(["u1:", "a1:"]))
def test_a_cursor_reads_back_and_is_base64url(key: str, kind: str) -> None:
    cursor = encode_cursor(key, kind)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                              "0123456789-_")
    assert decode_cursor(cursor, kind) == key
    other = "a1:" if kind == "u1:" else "u1:"
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, other)  # one listing's cursor is refused by another


@given(st.one_of(st.text(max_size=1100), st.binary(max_size=64), st.integers(),
                 st.none(), st.lists(st.text(), max_size=2)))
def test_any_cursor_is_a_key_or_invalid_request(cursor: Any) -> None:
    try:
        key = decode_cursor(cursor)
    except InvalidRequest:
        return
    assert encode_cursor(key) == cursor


def test_a_cursor_carrying_a_control_character_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(encode_cursor("a\x00b"))


@given(st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none(),
                 st.floats()))
def test_a_page_limit_is_1_to_max_or_invalid_request(limit: Any) -> None:
    try:
        size = page_limit(limit)
    except InvalidRequest:
        return
    assert 1 <= size <= MAX_PAGE and isinstance(size, int) and not isinstance(size, bool)


def test_page_limits() -> None:
    assert page_limit("1") == 1 and page_limit("200") == 200 and page_limit(50) == 50
    for bad in ("0", "201", "²", "-1", "1.5", "", True, 0, 2.0):
        with pytest.raises(InvalidRequest):
            page_limit(bad)


def test_roles_are_cleaned_once_for_every_caller() -> None:
    assert clean_roles(["a", " a ", "b"]) == ("a", "b")
    assert clean_roles([]) == ()
    for bad in ("admin", [1], ["a b"], [""], ["x" * 65], ["a\x00"], ["a"] * 101, None):
        with pytest.raises(InvalidRequest):
            clean_roles(bad)


def test_metrics_route_labels_never_carry_an_id() -> None:
    from authgate.web.app import route_label

    uid = "f" * 32
    assert route_label("/admin/users") == "/admin/users"
    assert route_label(f"/admin/users/{uid}") == "/admin/users/{id}"
    for sub in ("sessions", "audit", "password", "mfa-reset"):
        assert route_label(f"/admin/users/{uid}/{sub}") == f"/admin/users/{{id}}/{sub}"
    assert route_label(f"/admin/users/{uid}/sessions/{uid}") == \
        "/admin/users/{id}/sessions/{id}"
    for odd in (f"/admin/users/{uid}/{uid}", f"/admin/users/{uid}/audit/{uid}", "/admin/x",
                f"/admin/users/{uid}/sessions/{uid}/x"):
        assert route_label(odd) == "other"
