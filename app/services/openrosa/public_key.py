"""A questionnaire's `settings.public_key` (encrypted forms): what XLSForm authors paste, base64
of a DER SubjectPublicKeyInfo (the body of the PEM file `openssl rsa -pubout` writes), an RSA
key of at least 2048 bits. pyxform puts it in the XForm's `<submission base64RsaPublicKey>`.
"""

import base64
import binascii

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

MIN_KEY_BITS = 2048


def _rsa_key(text: str) -> RSAPublicKey | str:
    """The RSA key a `public_key` holds, or what is wrong with it."""
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 (paste the text between the PEM file's BEGIN and END lines)"
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return "is not a DER public key (SubjectPublicKeyInfo, as `openssl rsa -pubout` writes)"
    if not isinstance(key, RSAPublicKey):
        return "is not an RSA key"
    if key.key_size < MIN_KEY_BITS:
        return f"is an RSA key of {key.key_size} bits; at least {MIN_KEY_BITS} are needed"
    return key


def public_key_problem(text: str) -> str | None:
    """What is wrong with a questionnaire's `settings.public_key`, or None."""
    found = _rsa_key(text)
    return f"the public key {found}" if isinstance(found, str) else None


def key_bytes(text: str | None) -> int:
    """The modulus length in bytes of a (checked) public key: the length of what it encrypts;
    0 for none (a plaintext form)."""
    if not text:
        return 0
    found = _rsa_key(text)
    if isinstance(found, str):  # the definition rules refuse such a key; never stored
        raise ValueError(f"public_key {found}")
    return (found.key_size + 7) // 8
