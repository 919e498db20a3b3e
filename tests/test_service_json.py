"""The fast path's JSON body (:func:`xmargin.service.fastpath.response_json`) is Starlette's
``JSONResponse`` body byte for byte.  The reference is Starlette itself (``JSONResponse.render``,
the standard library's encoder), on what-if documents, on the edges of orjson's and Python's
float formats (1e-4, 1e16, subnormals, -0.0), on random IEEE doubles of every exponent, and on
strings and values that orjson writes differently or refuses (non-ASCII, lone surrogates,
NaN, big integers): those take the standard library's path, so they fail as Starlette does."""

from __future__ import annotations

import math
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from xmargin.service.fastpath import NotForOrjson, orjson_form, response_json


def starlette(content: object) -> bytes:
    return bytes(JSONResponse(content).body)


def _doc(x: float) -> dict[str, object]:
    fig = {"ficc_standalone": 2614954.3862677156, "savings_pct": x, "cme_combined": 0.0, "r": -0.0}
    return {"account": "CM01-C0014", "member": "CM01", "instrument": "TWEZ24", "quantity": 14.0,
            "new_account": False, "before": fig, "after": {**fig, "total": None}, "change": {"x": -x}}


@pytest.mark.parametrize("x", [0.0, -0.0, 1e-4, -1e-4, 0.00012345678901234, 9.999999999999999e-05, 1e-05, 5e-324,
                               2.2250738585072014e-308, 1.0, 123.456, 9999999999999998.0, 1e16, 1.5e16, 1e22,
                               1.7976931348623157e308, 2614954.3862677156, -37061.376643524505])
def test_edge_floats(x: float) -> None:
    assert response_json(_doc(x)) == starlette(_doc(x))


def test_figure_dicts_checked_whole() -> None:
    """A dict of figures is passed to orjson as it is only when every figure is one orjson
    writes as Python does; one tiny, huge or non-ASCII-keyed entry sends it the slow way."""
    base = {"a": 2614954.3862677156, "b": 0.0, "c": -0.0, "d": 1e-4, "e": -9999999999999998.0}
    assert orjson_form(base) is base
    for extra in ({"f": 1.4210854715202004e-14}, {"f": 1e16}, {"f": 5e-324}, {"\u00e9": 1.0}, {"f": None}, {"f": 1}):
        doc = {**base, **extra}
        assert response_json(doc) == starlette(doc)
        try:
            assert orjson_form(doc) is not doc
        except NotForOrjson:
            assert "\u00e9" in doc


def test_random_doubles_of_every_exponent() -> None:
    import random

    rng = random.Random(20261203)
    fast = 0
    for _ in range(20_000):
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if not math.isfinite(x):
            continue
        assert response_json({"v": x, "w": [x, -x]}) == starlette({"v": x, "w": [x, -x]}), repr(x)
        fast += type(orjson_form(x)) is float
    assert fast > 0  # some of them went to orjson as floats (the others as Python's own text)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e17, max_value=1e17, allow_nan=False))
def test_figures_in_dollars(x: float) -> None:
    assert response_json(_doc(x)) == starlette(_doc(x))


@pytest.mark.parametrize("value", [
    {"account": "CM01-ÉTÉ", "q": 1.5},  # non-ASCII: the standard library's path, same bytes
    {"account": "a\"b\\c\n\t\r\b\f\u0001\u001f\u007f/<>&'", "q": 1.5},  # ASCII escapes: orjson's path
    {"account": "x\u2028\u2029\u00a0", "q": 1.5},  # JavaScript's line separators: the standard library's
    {"n": 2 ** 70, "m": -(2 ** 63) - 1},  # integers past 64 bits
    {"t": (1.0, 2.0)},  # a tuple: Starlette writes a list
])
def test_values_orjson_would_write_differently(value: dict[str, object]) -> None:
    assert response_json(value) == starlette(value)


def test_which_values_take_orjsons_path() -> None:
    assert orjson_form({"account": "a\"b\\c\n\u0001\u007f"}) == {"account": "a\"b\\c\n\u0001\u007f"}
    assert orjson.dumps([orjson_form(1e-5), orjson_form(1.5e16)]) == b"[1e-05,1.5e+16]"  # Python's text, kept
    for value in ({"account": "\u00e9"}, (1.0,), math.nan, -math.inf, 2 ** 64, b"x"):
        with pytest.raises(NotForOrjson):
            orjson_form(value)


@pytest.mark.parametrize("value", [{"x": math.nan}, {"x": math.inf}, {"a": "\ud800"}, {"x": 1.0, "y": math.nan},
                                   {"x": 1e-3, "y": -math.inf, "z": 0.0}])
def test_refused_as_starlette_refuses(value: dict[str, object]) -> None:
    with pytest.raises(ValueError) as want:
        starlette(value)
    with pytest.raises(type(want.value)):
        response_json(value)
