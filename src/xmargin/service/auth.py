"""API keys: scoped to one clearing member, or admin (the market view); stored hashed.

A key is ``xmk_`` followed by 32 random bytes (``secrets.token_urlsafe``).  The service keeps
only ``SHA-256(key)``; a presented key is hashed and compared with every stored hash with
:func:`hmac.compare_digest` (no early exit), so neither the comparison nor the lookup
depends on how much of a key matched.  A key is sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``.

Keys files (JSON, written with mode 0600)::

    {"keys": [{"name": "CM01", "scope": "member", "member": "CM01", "key": "xmk_..."},
              {"name": "admin", "scope": "admin", "sha256": "<hex digest>"}]}

An entry gives either the key itself (``key``; hashed on load, the text is not kept) or its
``sha256`` hex digest.  A file holding keys in clear must not be readable by group or others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xmargin.errors import InputError

KEY_PREFIX = "xmk_"
MAX_KEY_LENGTH = 256
Scope = Literal["admin", "member"]


@dataclass(frozen=True)
class Principal:
    """Who a key speaks for."""

    name: str
    scope: Scope
    member: str | None = None  # the clearing member of a member key

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def sees_member(self, member: str) -> bool:
        return self.is_admin or member == self.member


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Hex SHA-256 of a key (what the service stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Hashed keys and their principals (see the module docstring)."""

    def __init__(self, entries: Iterable[tuple[str, Principal]] = ()) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for digest, principal in entries:
            self.add_hash(digest, principal)

    def add_hash(self, digest_hex: str, principal: Principal) -> None:
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise InputError("is not a SHA-256 hex digest (64 hex characters)", source="keys file", field="sha256")
        if principal.scope == "member" and not principal.member:
            raise InputError(f"key {principal.name!r}: a member key names its member", source="keys file",
                             field="member")
        self._entries.append((digest, principal))

    def add_key(self, key: str, principal: Principal) -> None:
        self.add_hash(hash_key(key), principal)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def principals(self) -> list[Principal]:
        return [p for _, p in self._entries]

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal of a presented key, or None (every stored hash is compared)."""
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    # -- provisioning ---------------------------------------------------------------------

    @classmethod
    def generate(cls, members: Iterable[str]) -> tuple[KeyStore, list[dict[str, str]]]:
        """Fresh keys: one per member and one admin.  Returns the store and the keys in clear
        (``name``, ``scope``, ``member``, ``key``) to hand out once."""
        store = cls()
        issued: list[dict[str, str]] = []
        for member in sorted(set(members)):
            key = new_key()
            store.add_key(key, Principal(member, "member", member))
            issued.append({"name": member, "scope": "member", "member": member, "key": key})
        key = new_key()
        store.add_key(key, Principal("admin", "admin"))
        issued.append({"name": "admin", "scope": "admin", "key": key})
        return store, issued

    @classmethod
    def from_data(cls, data: Any, source: str = "keys file") -> KeyStore:
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise InputError('expected {"keys": [...]}', source=source, field="keys")
        store = cls()
        for n, item in enumerate(data["keys"], start=1):
            if not isinstance(item, Mapping):
                raise InputError("each key must be an object", source=source, row=n)
            scope = item.get("scope")
            if scope not in ("admin", "member"):
                raise InputError(f"scope {scope!r} is not 'admin' or 'member'", source=source, row=n, field="scope")
            member = item.get("member") if scope == "member" else None
            if scope == "member" and (not isinstance(member, str) or not member.strip()):
                raise InputError("a member key names its member", source=source, row=n, field="member")
            member = member.strip() if isinstance(member, str) else None
            principal = Principal(str(item.get("name") or member or "admin"), scope, member)  # name: the member's
            if isinstance(item.get("key"), str) and item["key"]:
                store.add_key(item["key"], principal)
            elif isinstance(item.get("sha256"), str):
                try:
                    store.add_hash(item["sha256"].strip().lower(), principal)
                except InputError as exc:
                    raise InputError(exc.reason, source=source, row=n, field="sha256") from None
            else:
                raise InputError("give the key ('key') or its SHA-256 hex digest ('sha256')", source=source,
                                 row=n, field="key")
        if not len(store):
            raise InputError("no keys", source=source, field="keys")
        return store

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except OSError as exc:
            raise InputError(f"cannot read keys file: {exc.strerror}", source=path, field="--keys") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", source=path, row=exc.lineno) from None
        clear = isinstance(data, Mapping) and any(isinstance(k, Mapping) and k.get("key")
                                                  for k in data.get("keys", []) or [])
        if clear and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(f"holds keys in clear but is accessible to group/others (mode {stat.S_IMODE(mode):o}); "
                             f"chmod 600 {path}", source=path, field="--keys")
        return cls.from_data(data, str(path))


def write_keys(path: str | Path, issued: list[dict[str, str]]) -> Path:
    """Write issued keys (in clear) to a new file created with mode 0600; never overwrites."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError("already exists: give a new file (keys are never overwritten), or serve it with --keys",
                         source=path, field="--write-keys") from None
    except OSError as exc:
        raise InputError(f"cannot create keys file: {exc.strerror}", source=path, field="--write-keys") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"keys": issued}, fh, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)  # in case the umask or the file system widened it
    return path
