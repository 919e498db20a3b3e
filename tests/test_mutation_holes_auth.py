"""API keys (``service/auth.py``): the rules the mutation run of issue 17 found unguarded.

Each expected value is worked from the rule, not read from the code: a key is ``xmk_`` plus
32 random bytes in unpadded base64url (4 + 43 = 47 characters); a presented key longer than
256 characters is refused before it is hashed; a stored digest is SHA-256 (32 bytes, 64 hex
characters, checked here with :mod:`hashlib`); a member key names its member; a keys file
holding keys in clear is readable by its owner only (mode 0600, from the moment it is
created); errors name the file, the 1-based entry (``row``) and the field.  The HTTP side
(who sees what) is in ``test_service_auth.py`` and ``test_service_keys_file.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from xmargin.errors import InputError
from xmargin.service.auth import MAX_KEY_LENGTH, KeyStore, Principal, new_key, write_keys

ADMIN = Principal("admin", "admin")
CM01 = Principal("CM01", "member", "CM01")


def test_a_key_is_the_prefix_and_32_random_bytes() -> None:
    """32 bytes in base64url without padding: ceil(32 x 8 / 6) = 43 characters."""
    keys = {new_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert key.startswith("xmk_") and len(key) == 47
        assert len(base64.urlsafe_b64decode(key[4:] + "=")) == 32


def test_scopes_admin_sees_every_member_a_member_only_its_own() -> None:
    assert ADMIN.is_admin and ADMIN.sees_member("CM01") and ADMIN.sees_member("CM02")
    assert not CM01.is_admin
    assert CM01.sees_member("CM01") and not CM01.sees_member("CM02") and not CM01.sees_member("")
    assert not Principal("CM02", "member", "CM02").sees_member("CM01")


def test_presented_keys_longer_than_256_characters_are_refused() -> None:
    """A key of exactly 256 characters (an operator's own, in a keys file) works; one of 257
    is refused even when it is stored, so an attacker cannot make the service hash megabytes."""
    assert MAX_KEY_LENGTH == 256
    store = KeyStore()
    k256, k257 = "k" * 256, "j" * 257
    store.add_key(k256, ADMIN)
    store.add_key(k257, CM01)
    assert store.authenticate(k256) == ADMIN
    assert store.authenticate(k257) is None
    assert store.authenticate(k256[:-1]) is None


@pytest.mark.parametrize("digest", ["ab" * 31, "ab" * 33, "ab" * 32 + "a", "zz" * 32, ""])
def test_a_stored_digest_is_32_bytes_of_hex(digest: str) -> None:
    """62 or 66 hex characters, an odd count, non-hex or nothing: refused, naming the field."""
    with pytest.raises(InputError) as exc:
        KeyStore([(digest, ADMIN)])
    assert exc.value.field == "sha256"


def test_stored_digests_authenticate_their_key() -> None:
    key = "xmk_example"
    store = KeyStore([(hashlib.sha256(key.encode()).hexdigest(), CM01)])
    assert len(store) == 1 and store.principals == [CM01]
    assert store.authenticate(key) == CM01


@pytest.mark.parametrize("member", [None, ""])
def test_a_member_key_names_its_member(member: str | None) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(InputError) as exc:
        KeyStore([(digest, Principal("CM01", "member", member))])
    assert exc.value.field == "member"
    assert len(KeyStore([(digest, ADMIN)])) == 1  # an admin key names none


def test_generate_one_key_per_member_and_one_admin() -> None:
    """Members given twice and out of order: one key each, sorted, then the admin's."""
    store, issued = KeyStore.generate(["CM02", "CM01", "CM02"])
    assert [(k["name"], k["scope"], k.get("member")) for k in issued] == [
        ("CM01", "member", "CM01"), ("CM02", "member", "CM02"), ("admin", "admin", None)]
    assert len(store) == 3 and len({k["key"] for k in issued}) == 3
    assert store.principals == [CM01, Principal("CM02", "member", "CM02"), ADMIN]
    for k in issued:
        assert store.authenticate(k["key"]) == Principal(k["name"], k["scope"], k.get("member"))  # type: ignore[arg-type]


def test_keys_file_entries_by_hand() -> None:
    """Names default to the member (or "admin"); members are stripped; an admin entry's member
    field is ignored; an empty "key" falls back to "sha256", which may be upper case and padded."""
    digest = hashlib.sha256(b"k2").hexdigest()
    store = KeyStore.from_data({"keys": [
        {"scope": "member", "member": " CM01 ", "key": "k1"},
        {"scope": "admin", "member": "CM02", "key": "", "sha256": f"  {digest.upper()} "},
        {"name": "ops", "scope": "member", "member": "CM02", "key": "k3"},
        {"scope": "admin", "key": "k4"},
    ]})
    assert store.principals == [CM01, ADMIN, Principal("ops", "member", "CM02"), ADMIN]
    assert [store.authenticate(k) for k in ("k1", "k2", "k3", "k4")] == store.principals


@pytest.mark.parametrize(("data", "row", "field"), [
    ({"keys": [{"scope": "admin", "key": "a"}, {"scope": "member", "member": 5, "key": "b"}]}, 2, "member"),
    ({"keys": [{"scope": "admin", "key": "a"}, {"scope": "member", "member": "  ", "key": "b"}]}, 2, "member"),
    ({"keys": [{"scope": "admin", "key": "a"}, "b"]}, 2, None),
    ({"keys": [{"scope": "admin", "key": "a"}, {"scope": "admin"}]}, 2, "key"),
    ({"keys": [{"scope": "admin", "key": "a"}, {"scope": "admin", "sha256": "ab"}]}, 2, "sha256"),
    ({"keys": [{"scope": "admin", "key": "a"}, {"scope": "Admin", "key": "b"}]}, 2, "scope"),
    ({"keys": []}, None, "keys"),
    ({"keys": "a"}, None, "keys"),
    ([], None, "keys"),
])
def test_keys_file_errors_name_the_entry_and_field(data: object, row: int | None, field: str | None) -> None:
    with pytest.raises(InputError) as exc:
        KeyStore.from_data(data, source="k.json")
    assert (exc.value.source, exc.value.row, exc.value.field) == ("k.json", row, field)


def _write(path: Path, data: object, mode: int) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o601])
def test_keys_in_clear_readable_by_group_or_others_are_refused(tmp_path: Path, mode: int) -> None:
    """Any group or other permission bit on a file with keys in clear: refused, naming the mode."""
    path = _write(tmp_path / "keys.json", {"keys": [{"scope": "admin", "key": "a"}]}, mode)
    with pytest.raises(InputError) as exc:
        KeyStore.load(path)
    assert exc.value.field == "--keys" and f"mode {mode:o}" in str(exc.value)
    os.chmod(path, 0o600)
    assert KeyStore.load(path).authenticate("a") == ADMIN


def test_keys_file_load_errors(tmp_path: Path) -> None:
    """Missing file: field --keys; bad JSON: the line; a list, a non-object entry or null keys
    (mode 0600): the same InputError as from_data, not a crash."""
    with pytest.raises(InputError) as exc:
        KeyStore.load(tmp_path / "none.json")
    assert exc.value.field == "--keys" and "cannot read keys file" in str(exc.value)
    with pytest.raises(InputError) as exc:
        KeyStore.load(_write(tmp_path / "bad.json", '{"keys": [\n  {"scope": "admin",,}\n]}', 0o600))
    assert exc.value.row == 2
    for data, row, field in (([], None, "keys"), ({"keys": ["x"]}, 1, None), ({"keys": None}, None, "keys")):
        with pytest.raises(InputError) as exc:
            KeyStore.load(_write(tmp_path / "odd.json", data, 0o600))
        assert (exc.value.row, exc.value.field) == (row, field), data


def test_written_keys_file_is_private_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a umask of 0 and the final chmod taken away, the file is still created 0600: the
    keys are never readable by others, not even between the write and the chmod."""
    _, issued = KeyStore.generate(["CM01"])
    old = os.umask(0)
    try:
        monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
        path = write_keys(tmp_path / "keys.json", issued)
    finally:
        os.umask(old)
        monkeypatch.undo()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"keys": issued}


def test_written_keys_file_errors(tmp_path: Path) -> None:
    _, issued = KeyStore.generate(["CM01"])
    path = write_keys(tmp_path / "keys.json", issued)
    before = path.read_text()
    with pytest.raises(InputError, match="already exists") as exc:
        write_keys(path, [])
    assert exc.value.field == "--write-keys" and path.read_text() == before
    with pytest.raises(InputError, match="cannot create keys file") as exc:
        write_keys(tmp_path / "no-such-dir" / "keys.json", issued)
    assert exc.value.field == "--write-keys"


def test_the_principal_a_key_gives_cannot_be_changed() -> None:
    """The store hands out its own Principal object on every request with that key: were it
    mutable, a change made while serving one request would change who the key is for every
    later request.  It is frozen (and so hashable)."""
    store = KeyStore()
    store.add_key("k", CM01)
    who = store.authenticate("k")
    assert who is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        who.member = "CM02"  # type: ignore[misc]
    assert store.authenticate("k") == CM01 and hash(who) == hash(CM01)
