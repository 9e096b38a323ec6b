"""The cryptography profile a deployment runs (ENROLL_CRYPTO_PROFILE): international or commercial (国密) algorithms.

`standard` (the default): Temporal payloads are encrypted with AES-256-GCM and identity numbers are
looked up by HMAC-SHA256. `gm`: SM4-GCM (GB/T 32907, 128-bit keys) and HMAC-SM3 (GB/T 32905). Both come
from `cryptography` (OpenSSL). A payload names its cipher, so a switch of profile still reads what was
written before; a look-up hash does not, so the look-up profile is chosen before a season starts.
"""

from __future__ import annotations

from typing import Literal

CryptoProfile = Literal["standard", "gm"]
Cipher = Literal["AES-256-GCM", "SM4-GCM"]

PAYLOAD_CIPHER: dict[CryptoProfile, Cipher] = {"standard": "AES-256-GCM", "gm": "SM4-GCM"}
KEY_BYTES: dict[Cipher, int] = {"AES-256-GCM": 32, "SM4-GCM": 16}
LOOKUP_HMAC: dict[CryptoProfile, str] = {"standard": "HMAC-SHA256", "gm": "HMAC-SM3"}


def cipher_for_key(key: bytes) -> Cipher | None:
    """The one cipher a key of this length is used with (None: neither); a key never serves two ciphers."""
    return next((cipher for cipher, size in KEY_BYTES.items() if len(key) == size), None)
