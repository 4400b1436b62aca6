"""API keys for the search service: a JSON file of hashed keys with a role each, and the bind rule.

A key is 32 random bytes (URL-safe text), shown once when it is made; the file keeps only its SHA-256,
so a stolen key file lets no one in. Keys are long and random, so a plain hash is the right tool (a slow
password hash protects guessable secrets, which these are not). A presented key is hashed and compared
with every stored hash in constant time, so neither timing nor early exit tells how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sen_infer.files import write_atomic
from sen_infer.serve.errors import AccessError

ROLES = ("viewer", "admin")  # admin may do everything a viewer may, and read the audit log
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
FORMAT = "sen-infer-keys/1"


@dataclass(frozen=True)
class Key:
    """A stored key: who holds it, their role, the SHA-256 of the secret (never the secret), when made."""

    name: str
    role: str
    sha256: str
    created: float


def hash_key(secret: str) -> str:
    """The hex SHA-256 a key file stores for `secret` (a plain hash suits long random secrets)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class KeyFile:
    """The keys of one service: `KeyFile(path).add("alice", "viewer")` returns the new secret."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, Key]:
        """The stored keys by name; a missing file is no keys, a malformed one an AccessError."""
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AccessError(f"key file {self.path}: cannot read it: {e}") from None
        except RecursionError:
            raise AccessError(f"key file {self.path}: cannot read it: nested too deeply") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("keys"), list):
            raise AccessError(f"key file {self.path}: not a sen_infer key file (expected format {FORMAT!r})")
        keys = {}
        for entry in doc["keys"]:
            try:
                key = Key(str(entry["name"]), str(entry["role"]), str(entry["sha256"]), float(entry["created"]))
            except (KeyError, TypeError, ValueError):
                raise AccessError(f"key file {self.path}: malformed entry {entry!r}") from None
            if key.role not in ROLES or not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
                raise AccessError(f"key file {self.path}: entry {key.name!r} has a bad role or hash")
            keys[key.name] = key
        return keys

    def _save(self, keys: dict[str, Key]) -> None:
        doc = {"format": FORMAT, "keys": [k.__dict__ for k in sorted(keys.values(), key=lambda k: k.name)]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, (json.dumps(doc, indent=1) + "\n").encode())
            os.chmod(self.path, 0o600)
        except OSError as e:
            raise AccessError(f"key file {self.path}: cannot write it: {e.strerror or e}") from None

    def add(self, name: str, role: str) -> str:
        """A new key for `name` with `role`; the secret is returned once and never stored."""
        if not NAME.match(name or ""):
            raise AccessError(f"key name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise AccessError(f"role {role!r}: choose one of {', '.join(ROLES)}")
        keys = self.load()
        if name in keys:
            raise AccessError(f"a key named {name!r} exists already in {self.path}; remove it first")
        secret = "sen_" + secrets.token_urlsafe(32)
        keys[name] = Key(name, role, hash_key(secret), time.time())
        self._save(keys)
        return secret

    def remove(self, name: str) -> None:
        """Revokes `name`'s key (a running service keeps the keys it loaded until it restarts)."""
        keys = self.load()
        if name not in keys:
            raise AccessError(f"no key named {name!r} in {self.path}")
        del keys[name]
        self._save(keys)


class Gate:
    """Who a request is: `identify(header)` -> the Key, or None when the header names no stored key.
    With `keys=None` access control is off (a loopback-only service without a key file)."""

    def __init__(self, keys: dict[str, Key] | None):
        self.keys = keys
        self._hashes = [(bytes.fromhex(k.sha256), k) for k in (keys or {}).values()]

    @property
    def enabled(self) -> bool:
        """Whether keys are checked at all (False: a loopback-only service without a key file)."""
        return self.keys is not None

    def identify(self, authorization: str | None) -> Key | None:
        """The key an `Authorization: Bearer SECRET` header presents, or None (missing, malformed, unknown)."""
        if not authorization:
            return None
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        presented = bytes.fromhex(hash_key(secret.strip()))
        found = None
        for digest, key in self._hashes:  # every stored hash is compared: no early exit
            if hmac.compare_digest(presented, digest):
                found = key
        return found


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address) is reachable from this machine only, where keys may be omitted."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def gate_for(host: str, keys_path: str | os.PathLike | None) -> Gate:
    """The access rule: no key file is allowed only on a loopback address; a key file with no keys would
    lock everyone out and is refused too."""
    if keys_path is None:
        if not is_loopback(host):
            raise AccessError(f"refusing to serve on {host} without access keys: make one with "
                              f"`python -m sen_infer keys add NAME --role viewer --file KEYS` and pass --keys KEYS "
                              f"(only a loopback address may be served without keys)")
        return Gate(None)
    if not Path(keys_path).is_file():
        raise AccessError(f"key file {keys_path} does not exist: make one with "
                          f"`python -m sen_infer keys add NAME --role admin --file {keys_path}`")
    keys = KeyFile(keys_path).load()
    if not keys:
        raise AccessError(f"key file {keys_path} holds no keys: no one could use the service")
    return Gate(keys)
