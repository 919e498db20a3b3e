"""API keys and the access-control matrix, through a real ``xmargin serve`` process.

The server here is started without ``--write-keys``: it prints fresh keys on standard output,
which is how an operator gets them.  The matrix: a member key reaches its own accounts and
member summary (200), another member's answer 404 exactly like resources that do not exist,
no key or a wrong key answers 401, the market view needs an admin key, and an admin key sees
everything.  Rejected writes leave the ledger untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmargin.errors import InputError
from xmargin.service.auth import KeyStore, Principal, hash_key, new_key, write_keys
from xmargin.service.testing import ServerProcess


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-auth"), data_dir=data_dir, members=2, customers=20,
                        write_keys=False)
    with srv:
        yield srv


# ----------------------------------------------------------------------------- keys


def test_keys_are_printed_once_and_work(server: ServerProcess, client: httpx.Client) -> None:
    assert sorted(server.keys) == ["CM01", "CM02", "admin"]
    assert len(set(server.keys.values())) == 3
    for name, key in server.keys.items():
        assert key.startswith("xmk_") and len(key) >= 4 + 43  # 32 random bytes, base64url
        me = client.get("/me", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["name"] == name and me["scope"] == ("admin" if name == "admin" else "member")
        assert client.get("/me", headers={"X-API-Key": key}).json() == me
    assert client.get("/me", headers=server.headers("admin")).json()["members"] == ["CM01", "CM02"]
    assert client.get("/me", headers=server.headers("CM02")).json()["members"] == ["CM02"]


def test_key_store_hashes_and_compares() -> None:
    key = new_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    store = KeyStore()
    store.add_key(key, Principal("CM01", "member", "CM01"))
    assert store.authenticate(key) == Principal("CM01", "member", "CM01")
    for wrong in (key[:-1], key + "x", key[:-1] + ("A" if key[-1] != "A" else "B"), "", None, "x" * 10_000,
                  key.upper()):
        assert store.authenticate(wrong) is None
    assert key not in repr(store.__dict__)  # only the digest is kept
    # a store built from digests only authenticates the same key
    only_hash = KeyStore.from_data({"keys": [{"scope": "admin", "sha256": hash_key(key)}]})
    assert only_hash.authenticate(key) == Principal("admin", "admin")
    with pytest.raises(InputError) as exc:
        KeyStore.from_data({"keys": [{"scope": "member", "sha256": hash_key(key)}]})
    assert exc.value.field == "member"
    with pytest.raises(InputError) as exc:
        KeyStore.from_data({"keys": [{"scope": "root", "key": key}]})
    assert exc.value.field == "scope"
    with pytest.raises(InputError) as exc:
        KeyStore.from_data({"keys": [{"scope": "admin", "sha256": "abc"}]})
    assert exc.value.field == "sha256"


def test_keys_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    store, issued = KeyStore.generate(["CM01", "CM02"])
    path = write_keys(tmp_path / "keys.json", issued)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = KeyStore.load(path)
    for k in issued:
        assert loaded.authenticate(k["key"]) == store.authenticate(k["key"]) is not None
    with pytest.raises(InputError) as exc:
        write_keys(path, issued)
    assert exc.value.field == "--write-keys"
    os.chmod(path, 0o644)  # keys in clear readable by others: refused
    with pytest.raises(InputError) as exc:
        KeyStore.load(path)
    assert exc.value.field == "--keys" and "chmod 600" in str(exc.value)
    hashed = tmp_path / "hashed.json"  # digests only may be world-readable
    hashed.write_text(json.dumps({"keys": [{"name": k["name"], "scope": k["scope"], "member": k.get("member"),
                                            "sha256": hash_key(k["key"])} for k in issued]}))
    os.chmod(hashed, 0o644)
    assert KeyStore.load(hashed).authenticate(issued[0]["key"]) == Principal("CM01", "member", "CM01")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmargin.cli.serve_cmd", "serve", *args], capture_output=True,
                          text=True, timeout=60)


def test_serve_refuses_bad_key_options_before_loading(tmp_path: Path) -> None:
    existing = tmp_path / "keys.json"
    existing.write_text("{}")
    r = _serve("--write-keys", str(existing), "--ledger", f"sqlite:///{tmp_path / 'l.db'}")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = _serve("--keys", str(existing), "--write-keys", str(tmp_path / "new.json"))
    assert r.returncode == 2 and "not both" in r.stderr
    r = _serve("--keys", str(existing))
    assert r.returncode == 2 and "keys" in r.stderr
    assert not (tmp_path / "l.db").exists()


# ----------------------------------------------------------------------------- the matrix


def _call(client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    if path.endswith("/stream"):
        with client.stream(method, path, headers=headers) as r:
            return r  # status only (the body never ends)
    return client.request(method, path, headers=headers, json=body)


OWN, OTHER = "CM01", "CM02"
# (label, method, path, body) with {m} the member, {a} one of its accounts
ENDPOINTS = [
    ("account", "GET", "/accounts/{m}-C0001", None),
    ("account house", "GET", "/accounts/{m}-HOUSE", None),
    ("member", "GET", "/members/{m}", None),
    ("what-if trade", "POST", "/what-if/trade", {"account": "{m}-C0002", "instrument": "ZNZ24", "quantity": -3}),
    ("what-if trade, member named", "POST", "/what-if/trade",
     {"account": "{m}-NEW", "member": "{m}", "account_type": "customer", "instrument": "ZNZ24", "quantity": 2}),
]


def _fill(x: Any, member: str) -> Any:
    if isinstance(x, str):
        return x.replace("{m}", member)
    if isinstance(x, dict):
        return {k: _fill(v, member) for k, v in x.items()}
    return x


@pytest.mark.parametrize(("label", "method", "path", "body"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_member_sees_own_and_not_other(server: ServerProcess, client: httpx.Client, label: str, method: str,
                                       path: str, body: Any) -> None:
    key = server.headers(OWN)
    own = _call(client, method, _fill(path, OWN), key, _fill(body, OWN))
    assert own.status_code == 200, own.text
    other = _call(client, method, _fill(path, OTHER), key, _fill(body, OTHER))
    assert other.status_code == 404, other.text
    # indistinguishable from something that does not exist
    missing = _call(client, method, _fill(path, "CM99"), key, _fill(body, "CM99"))
    assert missing.status_code == 404
    assert set(other.json()) == set(missing.json()) == {"detail"}
    assert other.json()["detail"].replace(OTHER, "X") == missing.json()["detail"].replace("CM99", "X")
    # the other member's own key and the admin key both reach it
    for who in (OTHER, "admin"):
        r = _call(client, method, _fill(path, OTHER), server.headers(who), _fill(body, OTHER))
        assert r.status_code == 200, (who, r.text)


MATRIX_ALL = [
    ("GET", "/me", None), ("GET", "/accounts", None), ("GET", "/accounts/CM01-C0001", None),
    ("GET", "/members/CM01", None), ("GET", "/market", None), ("GET", "/stream", None),
    ("POST", "/what-if/trade", {"account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1}),
    ("POST", "/what-if/portfolio", [{"account": "A", "member": "CM01", "account_type": "house",
                                     "instrument": "ZNZ24", "quantity": 1}]),
    ("POST", "/trades", {"trade_id": "auth-x", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), MATRIX_ALL, ids=[f"{m} {p}" for m, p, _ in MATRIX_ALL])
@pytest.mark.parametrize("presented", ["none", "wrong", "bearer-wrong", "basic", "truncated"])
def test_missing_or_invalid_key_is_401(server: ServerProcess, client: httpx.Client, method: str, path: str,
                                       body: Any, presented: str) -> None:
    real = server.keys["admin"]
    headers = {"none": {}, "wrong": {"X-API-Key": new_key()}, "bearer-wrong": {"Authorization": f"Bearer {new_key()}"},
               "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="}, "truncated": {"X-API-Key": real[:-2]}}[presented]
    h = server.ledger_head()
    r = _call(client, method, path, headers, body)
    assert r.status_code == 401
    assert r.headers.get("www-authenticate") == "Bearer"
    assert server.ledger_head() == h


def test_admin_and_member_scopes(server: ServerProcess, client: httpx.Client) -> None:
    admin, cm01 = server.headers("admin"), server.headers("CM01")
    market = client.get("/market", headers=admin)
    assert market.status_code == 200 and [m["member"] for m in market.json()["members"]] == ["CM01", "CM02"]
    r = client.get("/market", headers=cm01)
    assert r.status_code == 403 and "members" not in r.text
    everyone = {a["member"] for a in client.get("/accounts", headers=admin).json()["accounts"]}
    assert everyone == {"CM01", "CM02"}
    mine = client.get("/accounts", headers=cm01).json()["accounts"]
    assert mine and {a["member"] for a in mine} == {"CM01"}
    assert all(a["account"].startswith("CM01-") for a in mine)
    with client.stream("GET", "/stream", headers=cm01) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")


def test_member_cannot_write_for_another_member(server: ServerProcess, client: httpx.Client) -> None:
    h = server.ledger_head()
    cm01 = server.headers("CM01")
    for body in ({"trade_id": "auth-1", "account": "CM02-C0001", "instrument": "ZNZ24", "quantity": 1},
                 {"trade_id": "auth-2", "account": "CM02-NEW", "member": "CM02", "account_type": "customer",
                  "instrument": "ZNZ24", "quantity": 1},
                 {"trade_id": "auth-3", "account": "CM01-C0001", "member": "CM02", "instrument": "ZNZ24",
                  "quantity": 1}):
        r = client.post("/trades", json=body, headers=cm01)
        assert r.status_code == 404, r.text
    assert server.ledger_head() == h
    # their own trade goes through; the other member cannot replay or even see it
    ok = client.post("/trades", json={"trade_id": "auth-4", "account": "CM01-C0001", "instrument": "ZNZ24",
                                      "quantity": 2}, headers=cm01)
    assert ok.status_code == 201
    h = server.ledger_head()
    r = client.post("/trades", json={"trade_id": "auth-4", "account": "CM01-C0001", "instrument": "ZNZ24",
                                     "quantity": 2}, headers=server.headers("CM02"))
    assert r.status_code == 409 and "ZNZ24" not in r.text and "CM01-C0001" not in r.text
    assert server.ledger_head() == h


def test_security_headers_and_no_cdn(server: ServerProcess, client: httpx.Client) -> None:
    r = httpx.get(server.base_url + "/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(server.base_url + "/docs", timeout=10).status_code == 404  # Swagger UI would need a CDN
    for asset in ("/static/app.js", "/static/style.css"):
        text = httpx.get(server.base_url + asset, timeout=10).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
