"""An operator's own keys file, served by a real ``xmargin serve`` process (issue 17).

The keys file is written here by hand (mode 0600), as an operator would: an admin key of
exactly 256 characters (the longest a presented key may be), CM01's key given only as its
SHA-256 digest (upper case, computed here with :mod:`hashlib`), CM02's entry with its member
padded and no name, and a second, named key for CM01.  Over HTTP: each key is who the file
says (``/me``), sees what its scope allows, and a key one character too long answers 401.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from xmargin.service.testing import ServerProcess

ADMIN_KEY = "xmk_" + "A" * 252  # 256 characters
CM01_KEY = "xmk_cm01-by-digest"
KEYS = {"admin": ADMIN_KEY, "CM01": CM01_KEY, "CM02": "xmk_cm02-padded", "ops": "xmk_ops-for-cm01"}


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("serve-keys-file")
    keys = work / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"name": "admin", "scope": "admin", "key": ADMIN_KEY},
        {"scope": "member", "member": "CM01", "sha256": hashlib.sha256(CM01_KEY.encode()).hexdigest().upper()},
        {"scope": "member", "member": " CM02 ", "key": KEYS["CM02"]},
        {"name": "ops", "scope": "member", "member": "CM01", "key": KEYS["ops"]},
    ]}))
    os.chmod(keys, 0o600)
    srv = ServerProcess(work, data_dir=data_dir, members=2, customers=3, extra=["--keys", str(keys)], write_keys=False)
    with srv:
        srv.keys = KEYS  # the file holds CM01's digest only: the test knows the key
        yield srv


def test_each_key_is_who_the_file_says(server: ServerProcess, client: httpx.Client) -> None:
    expected = {"admin": ("admin", None, ["CM01", "CM02"]), "CM01": ("member", "CM01", ["CM01"]),
                "CM02": ("member", "CM02", ["CM02"]), "ops": ("member", "CM01", ["CM01"])}
    for name, (scope, member, members) in expected.items():
        for headers in (server.headers(name), {"Authorization": f"Bearer {KEYS[name]}"}):
            me = client.get("/me", headers=headers)
            assert me.status_code == 200, (name, me.text)
            assert (me.json()["name"], me.json()["scope"], me.json()["member"], me.json()["members"]) == (
                name, scope, member, members)


def test_a_key_longer_than_256_characters_is_401(server: ServerProcess, client: httpx.Client) -> None:
    assert len(ADMIN_KEY) == 256
    for key in (ADMIN_KEY + "A", ADMIN_KEY[:-1]):
        r = client.get("/me", headers={"X-API-Key": key})
        assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer"


def test_scopes_over_http(server: ServerProcess, client: httpx.Client) -> None:
    """The admin key reaches the market view and every member; a member key (the digest-only
    one, and the padded one) only its own member's accounts: another's answer 404."""
    assert client.get("/market", headers=server.headers("admin")).status_code == 200
    for member, other in (("CM01", "CM02"), ("CM02", "CM01")):
        key = server.headers(member)
        assert client.get("/market", headers=key).status_code == 403
        assert client.get(f"/accounts/{member}-C0001", headers=key).status_code == 200
        assert client.get(f"/accounts/{other}-C0001", headers=key).status_code == 404
        assert client.get(f"/members/{other}", headers=key).status_code == 404
        assert client.get(f"/accounts/{other}-C0001", headers=server.headers("admin")).status_code == 200
