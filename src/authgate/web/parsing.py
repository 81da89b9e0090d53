"""Request bodies: one reader (64 KiB at most) and one parser with one set of rules, for the
API's JSON and forms and for the pages' forms alike.

The rules: a body over :data:`MAX_BODY` is 413; JSON must be one UTF-8 object; a form is
UTF-8 ``application/x-www-form-urlencoded`` of at most :data:`MAX_FIELDS` fields; a key
given twice (at any depth of a JSON body) is refused, since two parsers could each read a
different one. Every refusal is a 4xx :class:`AuthGateError`, never anything else.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from authgate.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY = 64 * 1024
MAX_FIELDS = 64


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, refused (413) as soon as it is known to be over ``limit``: by its
    ``Content-Length`` before reading, else while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise BadRequest(f"parameter {key!r} given twice")
        found[key] = value
    return found


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object (orjson's strict reading), without a key given twice."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:  # orjson keeps the last of two equal keys: a second reading finds them
        json.loads(body, object_pairs_hook=_unique)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except ValueError:  # (a BadRequest from _unique passes through: it is not one)
        raise BadRequest("the body is not valid JSON") from None
    return data


def parse_form(body: bytes) -> dict[str, str]:
    """An urlencoded form, without a key given twice."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid") from None
    return _unique(pairs)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_params(request: Request, *, allow_form: bool = False) -> dict[str, Any]:
    """The body as a JSON object (or, where allowed, an urlencoded form). Rejects anything
    else with a 4xx :class:`AuthGateError`."""
    ctype = media_type(request)
    body = await read_body(request)
    if ctype == "application/json" or (ctype.endswith("+json") and "/" in ctype):
        return parse_json(body)
    if allow_form and ctype == "application/x-www-form-urlencoded":
        return parse_form(body)
    raise UnsupportedMediaType("send application/json" +
                               (" or application/x-www-form-urlencoded" if allow_form else ""))


async def read_form(request: Request) -> dict[str, str]:
    """An HTML form's fields (the pages): the body read as a form whatever its declared
    type, so that a form without fields (or an odd client's) is an empty one."""
    return parse_form(await read_body(request))


def check_fields(data: dict[str, Any], allowed: set[str],
                 required: frozenset[str] | set[str] = frozenset()) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(f"unknown field: {unknown[0]}")
    missing = sorted(required - set(data))
    if missing:
        raise BadRequest(f"missing field: {missing[0]}")
