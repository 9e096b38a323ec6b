"""The provider's ES256 signing keys, kept in its state directory so tokens outlive a restart.

Only this process holds the private keys; product processes get the public ones from /jwks. A
rotation signs with a new key from then on and keeps publishing the previous one, so tokens signed
just before it still verify until they expire (access tokens live 10 minutes: rotate no more often).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

KEYS_FILE = "signing-keys.json"
ALGORITHM = "ES256"
# The key signing now and the one before it; a key older than that has signed nothing still valid.
KEPT_KEYS = 2


class SigningKeys:
    """The keys in `state_dir/signing-keys.json` (newest first), generated on first use."""

    def __init__(self, state_dir: Path):
        self._path = Path(state_dir) / KEYS_FILE
        if self._path.exists():
            stored = json.loads(self._path.read_text("utf-8"))["keys"]
            self._keys = [ECKey.import_key(key) for key in stored]
        else:
            self._keys = [_new_key()]
            self._save()

    @property
    def current_kid(self) -> str:
        return str(self._keys[0].kid)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A compact JWS of the claims, with header typ, alg ES256 and the current key's kid."""
        key = self._keys[0]
        return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": typ}, claims, key, algorithms=[ALGORITHM])

    def verification_keys(self) -> KeySet:
        return KeySet(list(self._keys))

    def jwks(self) -> dict[str, Any]:
        """The public keys, as /jwks serves them."""
        return {"keys": [key.as_dict(private=False) for key in self._keys]}

    def rotate(self) -> str:
        """Sign with a new key from now on; the previous one stays published. Returns the new kid."""
        self._keys = [_new_key(), *self._keys][:KEPT_KEYS]
        self._save()
        return self.current_kid

    def _save(self) -> None:
        """Written to a temporary file readable by the owner only, then renamed over the old one."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"keys": [key.as_dict(private=True) for key in self._keys]}, file)
        os.replace(temporary, self._path)


def _new_key() -> ECKey:
    return ECKey.generate_key("P-256", {"alg": ALGORITHM, "use": "sig"}, auto_kid=True)
