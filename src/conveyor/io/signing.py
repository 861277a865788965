"""Ed25519 signatures over bytes; keys and signatures as hex (a signing key is its 32-byte seed)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def public_key_of(seed: bytes) -> str:
    """The public key (hex) of the signing key with this seed."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(seed: bytes, data: bytes) -> str:
    """The signature (hex) of ``data`` by the signing key with this seed."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(data).hex()


def verifies(public_key: str, data: bytes, signature: str) -> bool:
    """Whether ``signature`` is the signature of exactly ``data`` by the holder of ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
