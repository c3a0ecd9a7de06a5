"""Encrypted forms (OpenRosa encryption, `settings.public_key`, see public_key.py): the
envelope ODK Collect submits in place of the instance.

On finalizing, the client draws a random AES-256 key, encrypts it with
the form's key (RSA-OAEP), encrypts each media file and then the instance (AES-CFB, an IV per
file derived from the instance ID and the AES key) and submits an envelope naming them:

    <data id=".." version=".." encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
      <base64EncryptedKey>..</base64EncryptedKey>
      <meta xmlns="http://openrosa.org/xforms"><instanceID>uuid:..</instanceID></meta>
      <media><file>photo.jpg.enc</file></media>
      <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
      <base64EncryptedElementSignature>..</base64EncryptedElementSignature>
    </data>

The server holds no private key: it checks the envelope's shape only (the RSA-encrypted key and
signature are as long as the form's key) and keeps it and the files as received, for the owner
to decrypt (ODK Briefcase, or any tool following the spec). Elements are matched by local name:
Collect and Enketo write different namespaces.
"""

import base64
import binascii
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import orjson

from app.errors import BadRequest, Invalid
from app.models.attachments import MAX_NAME
from app.services.openrosa.submission import FormShape, instance_id, local_name, parse

# The envelope's own name among the response's files (the encrypted ones end in .enc).
ENVELOPE_FILE = "submission.xml"
ENCRYPTED_SUFFIX = ".enc"
MAX_MEDIA_FILES = 99  # with the instance, the most parts one submission may carry (MAX_PARTS)
ENVELOPE_ELEMENTS = (
    "base64EncryptedKey",
    "meta",
    "media",
    "encryptedXmlFile",
    "base64EncryptedElementSignature",
)


@dataclass(frozen=True)
class Envelope:
    """An encrypted submission's envelope: what it names, and a fingerprint of its content."""

    response_id: uuid.UUID
    media: tuple[str, ...]  # the encrypted media files, in the client's order
    xml_file: str  # the encrypted instance
    content_hash: str

    @property
    def files(self) -> tuple[str, ...]:
        """Every encrypted file the envelope names (media first, as they were encrypted)."""
        return (*self.media, self.xml_file)


def is_envelope(root: Element) -> bool:
    return root.get("encrypted") in ("yes", "true")


def _plaintext_refused() -> Invalid:
    return Invalid(
        "This form takes only encrypted submissions",
        errors=[
            {
                "loc": ["body"],
                "msg": "the form has a public key: the client must encrypt the submission",
                "type": "encrypted_only",
            }
        ],
    )


def refuse_plaintext() -> None:
    """A plaintext response (JSON or an OpenRosa instance) to an encrypted questionnaire."""
    raise _plaintext_refused()


def _one(found: dict[str, list[Element]], name: str) -> Element:
    elements = found.get(name, [])
    if len(elements) != 1:
        raise BadRequest(f"The encrypted envelope must hold exactly one <{name}>")
    return elements[0]


def _encrypted_bytes(element: Element, size: int) -> str:
    """The element's base64 text, checked to hold `size` bytes (one RSA block)."""
    text = "".join((element.text or "").split())
    name = local_name(element)
    try:
        length = len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise BadRequest(f"<{name}> is not base64") from None
    if length != size:
        raise BadRequest(f"<{name}> holds {length} bytes; the form's key encrypts to {size}")
    return text


def _file_name(element: Element) -> str:
    name = (element.text or "").strip()
    if (
        not name.endswith(ENCRYPTED_SUFFIX)
        or len(name) > MAX_NAME
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise BadRequest(
            f"The envelope names a file {name[:80]!r}: a name ending in {ENCRYPTED_SUFFIX}, "
            f"at most {MAX_NAME} characters, without '/' or '\\'"
        )
    return name


def _media(found: dict[str, list[Element]]) -> Iterator[str]:
    for media in found.get("media", []):
        for element in media:
            if local_name(element) != "file":
                raise BadRequest(f"<media> holds <file> elements only, not <{local_name(element)}>")
            yield _file_name(element)


def read_envelope(root: Element, shape: FormShape) -> Envelope:
    """The envelope of an encrypted submission to this form; BadRequest naming what is wrong,
    Invalid for an envelope to a plaintext form or a plaintext instance to an encrypted one."""
    if not shape.key_bytes:
        raise Invalid(
            "This form takes no encrypted submissions",
            errors=[{"loc": ["body"], "msg": "encrypted submission", "type": "encrypted"}],
        )
    if not is_envelope(root):
        raise _plaintext_refused()
    found: dict[str, list[Element]] = {}
    for child in root:
        name = local_name(child)
        if name not in ENVELOPE_ELEMENTS:
            raise BadRequest(f"The encrypted envelope has an unknown element <{name}>")
        found.setdefault(name, []).append(child)
    key = _encrypted_bytes(_one(found, "base64EncryptedKey"), shape.key_bytes)
    signature = _encrypted_bytes(_one(found, "base64EncryptedElementSignature"), shape.key_bytes)
    response_id = instance_id(_one(found, "meta"))
    xml_file = _file_name(_one(found, "encryptedXmlFile"))
    media = tuple(_media(found))
    if len(media) > MAX_MEDIA_FILES:
        raise BadRequest(f"The envelope names more than {MAX_MEDIA_FILES} media files")
    if len({*media, xml_file}) != len(media) + 1:
        raise BadRequest("The envelope names a file twice")
    content = [shape.slug, shape.version, str(response_id), key, signature, [*media], xml_file]
    digest = hashlib.sha256(orjson.dumps(content)).hexdigest()
    return Envelope(response_id, media, xml_file, digest)


def named_files(xml: bytes) -> tuple[str, ...]:
    """The files a stored envelope names (the envelope, then the encrypted files), for the
    response's attachment list."""
    root = parse(xml)
    names = [ENVELOPE_FILE]
    for child in root:
        name = local_name(child)
        if name == "media":
            names += [(element.text or "").strip() for element in child]
        elif name == "encryptedXmlFile":
            names.append((child.text or "").strip())
    return tuple(names)
