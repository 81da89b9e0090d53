"""The one body reader and parser: its rules, and properties over any input."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from authgate.errors import AuthGateError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from authgate.web.parsing import (
    MAX_BODY,
    MAX_FIELDS,
    parse_form,
    parse_json,
    read_body,
    read_form,
    read_params,
)


def request(body: bytes | list[bytes], headers: dict[str, str] | None = None) -> Request:
    chunks = [body] if isinstance(body, bytes) else list(body)

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    return Request(scope, receive)


def refused(call: Any, *args: Any) -> AuthGateError:
    with pytest.raises(AuthGateError) as info:
        call(*args)
    assert 400 <= info.value.status < 500
    return info.value


# -- rules ------------------------------------------------------------------------------

def test_json_object_only() -> None:
    assert parse_json(b'{"a": 1, "b": {"c": [1, 2]}}') == {"a": 1, "b": {"c": [1, 2]}}
    for body in (b"", b"[]", b"null", b"42", b'"x"', b"{", b'{"a": NaN}', b"\xff{}"):
        assert isinstance(refused(parse_json, body), BadRequest), body


def test_json_duplicate_keys_are_refused_at_any_depth() -> None:
    for body in (b'{"username": "a", "username": "b"}', b'{"a": {"x": 1, "x": 2}}',
                 b'{"a": [{"x": 1, "\\u0078": 2}]}'):
        assert "given twice" in refused(parse_json, body).detail, body


def test_json_nested_deeply_is_read_or_refused_never_a_crash() -> None:
    """orjson reads 1024 levels; the second reading (for duplicate keys) may hit Python's
    recursion limit first: a 400 then, never a RecursionError."""
    for depth in (100, 900, 1000, 1023, 5000):
        deep = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
        with contextlib.suppress(BadRequest):
            assert "a" in parse_json(deep)


def test_form_rules() -> None:
    assert parse_form(b"a=1&b=&c=x+y%21") == {"a": "1", "b": "", "c": "x y!"}
    assert parse_form(b"") == {}
    assert "given twice" in refused(parse_form, b"a=1&a=2").detail
    assert "given twice" in refused(parse_form, b"a+b=1&a%20b=2").detail  # same key decoded
    refused(parse_form, b"a=\xff")
    assert len(parse_form("&".join(f"k{i}=v" for i in range(MAX_FIELDS)).encode())) == \
        MAX_FIELDS
    refused(parse_form, "&".join(f"k{i}=v" for i in range(MAX_FIELDS + 1)).encode())


async def test_read_body_limits() -> None:
    assert await read_body(request([b"ab", b"cd"])) == b"abcd"
    with pytest.raises(PayloadTooLarge):
        await read_body(request(b"x", {"content-length": str(MAX_BODY + 1)}))
    with pytest.raises(BadRequest):
        await read_body(request(b"x", {"content-length": "1e3"}))
    with pytest.raises(PayloadTooLarge):  # no Content-Length: stopped while reading
        await read_body(request([b"x" * 8192] * 9))
    assert len(await read_body(request([b"x" * 8192] * 8))) == MAX_BODY


async def test_read_params_by_media_type() -> None:
    js = {"content-type": "application/json; charset=utf-8"}
    assert await read_params(request(b'{"a": "1"}', js)) == {"a": "1"}
    assert await read_params(request(b'{"a": "1"}', {"content-type": "application/x+json"}))
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert await read_params(request(b"a=1", form), allow_form=True) == {"a": "1"}
    with pytest.raises(UnsupportedMediaType):
        await read_params(request(b"a=1", form))
    with pytest.raises(UnsupportedMediaType):
        await read_params(request(b"{}", {"content-type": "text/plain"}), allow_form=True)
    with pytest.raises(BadRequest):  # the same duplicate rule for forms and JSON
        await read_params(request(b"a=1&a=1", form), allow_form=True)


async def test_read_form_whatever_the_declared_type() -> None:
    assert await read_form(request(b"")) == {}
    assert await read_form(request(b"csrf_token=x", {"content-type": "text/plain"})) == \
        {"csrf_token": "x"}
    with pytest.raises(BadRequest):
        await read_form(request(b"csrf_token=x&csrf_token=y"))


# -- properties -------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_parse_form_never_raises_anything_but_a_4xx(body: bytes) -> None:
    try:
        parse_form(body)
    except AuthGateError as exc:
        assert exc.status == 400


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=512),
                 st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\u', max_size=200)
                 .map(str.encode)))
def test_parse_json_never_raises_anything_but_a_4xx(body: bytes) -> None:
    try:
        parse_json(body)
    except AuthGateError as exc:
        assert exc.status == 400


keys = st.text(max_size=8)
values = st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=MAX_FIELDS - 1), keys, values, st.randoms())
def test_a_form_key_given_twice_is_always_refused(fields: dict[str, str], key: str, value: str,
                                                  rnd: Any) -> None:
    pairs = [*fields.items(), (key, value)]
    if key not in fields:
        pairs.append((key, value))
    rnd.shuffle(pairs)
    with pytest.raises(BadRequest):
        parse_form(urlencode(pairs).encode())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=MAX_FIELDS))
def test_a_form_of_distinct_keys_reads_back(fields: dict[str, str]) -> None:
    assert parse_form(urlencode(list(fields.items())).encode()) == fields


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                           | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(keys, inner, max_size=3), max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=5))
def test_a_json_object_reads_back(data: dict[str, Any]) -> None:
    assert parse_json(orjson.dumps(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=5), keys, json_values, json_values,
       st.integers(0, 5))
def test_a_json_key_given_twice_is_always_refused(data: dict[str, Any], key: str, first: Any,
                                                  second: Any, at: int) -> None:
    members = [json.dumps(k) + ":" + json.dumps(v) for k, v in data.items() if k != key]
    at = min(at, len(members))
    members[at:at] = [json.dumps(key) + ":" + json.dumps(first)]
    members.append(json.dumps(key) + ":" + json.dumps(second))
    with pytest.raises(BadRequest):
        parse_json(("{" + ",".join(members) + "}").encode())
