"""Encrypted forms (`settings.public_key`): the key is checked when saved and carried by the
XForm and the XLSForm; ODK Collect's encrypted submissions are stored as received (the envelope
and its encrypted files as attachments, exactly once by instanceID) and exported for the owner,
who decrypts them here with the private key; plaintext is refused, aggregates too.

The submissions are encrypted as the ODK encryption spec (getodk.github.io/xforms-spec/encryption)
has a client do it (as read in ODK Central's and Enketo's code): a random AES-256 key, RSA-OAEP
(SHA-256, MGF1 SHA-256) encrypted with the form's key; each file AES-CFB with PKCS#7 padding,
the media files first and the instance last, the IV of file i the MD5 of instanceID + AES key
with byte i mod 16 incremented once more for each file.
"""

import asyncio
import base64
import hashlib
import io
import json
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI

from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from tests.clients import odk_engine_fills
from tests.factories import almaty_answers, almaty_definition, create_questionnaire, headers_for
from tests.servers import running_server
from tests.test_openrosa import _collector, _message, _post, instance_xml
from tests.test_xlsform import workbook
from tests.test_xlsform_import import error_locations, upload

XFORMS = "http://www.w3.org/2002/xforms"
ENVELOPE_NS = "http://www.opendatakit.org/xforms/encrypted"
OAEP_SHA256 = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(3000)  # a JPEG's start and any bytes


def _spki(key: Any) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- the client's side of the spec, and the owner's -------------------------------------------


def _ivs(instance_id: str, key: bytes, count: int) -> list[bytes]:
    seed = bytearray(hashlib.md5(instance_id.encode() + key).digest())  # noqa: S324 - the spec's
    ivs = []
    for index in range(count):
        seed[index % 16] = (seed[index % 16] + 1) % 256
        ivs.append(bytes(seed))
    return ivs


def _aes(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def _unaes(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    padded = decryptor.update(data) + decryptor.finalize()
    return unpadder.update(padded) + unpadder.finalize()


@dataclass
class Encrypted:
    envelope: bytes
    files: dict[str, bytes] = field(default_factory=dict)  # name -> encrypted bytes


def encrypt(
    public: rsa.RSAPublicKey,
    questionnaire: Questionnaire,
    instance: bytes,
    instance_id: str,
    media: dict[str, bytes],
) -> Encrypted:
    """What ODK Collect submits for a finalized instance of an encrypted form."""
    key = os.urandom(32)
    ivs = _ivs(instance_id, key, len(media) + 1)
    files = {
        f"{name}.enc": _aes(key, iv, data)
        for (name, data), iv in zip(media.items(), ivs[:-1], strict=True)
    }
    files["submission.xml.enc"] = _aes(key, ivs[-1], instance)
    encrypted_key = base64.b64encode(public.encrypt(key, OAEP_SHA256)).decode()
    signed = [questionnaire.slug, str(questionnaire.version), encrypted_key, instance_id]
    # The signature: MD5 over these lines (each file by its plain name and plain MD5), then RSA.
    plain = {**media, "submission.xml": instance}
    signed += [f"{name}::{hashlib.md5(data).hexdigest()}" for name, data in plain.items()]  # noqa: S324
    digest = hashlib.md5("\n".join(signed).encode() + b"\n").digest()  # noqa: S324
    signature = base64.b64encode(public.encrypt(digest, OAEP_SHA256)).decode()
    listed = "".join(
        f"<media><file>{name}</file></media>" for name in files if name != "submission.xml.enc"
    )
    envelope = (
        f'<data id="{questionnaire.slug}" version="{questionnaire.version}" encrypted="yes" '
        f'xmlns="{ENVELOPE_NS}"><base64EncryptedKey>{encrypted_key}</base64EncryptedKey>'
        f'<meta xmlns="http://openrosa.org/xforms"><instanceID>{instance_id}</instanceID></meta>'
        f"{listed}<encryptedXmlFile>submission.xml.enc</encryptedXmlFile>"
        f"<base64EncryptedElementSignature>{signature}</base64EncryptedElementSignature></data>"
    )
    return Encrypted(envelope.encode(), files)


def decrypt(
    private: rsa.RSAPrivateKey, envelope: bytes, files: dict[str, bytes]
) -> dict[str, bytes]:
    """The owner's side (as ODK Briefcase does): every file the envelope names, decrypted."""
    root = parse_xml(envelope)
    key = private.decrypt(
        base64.b64decode(root.findtext(f"{{{ENVELOPE_NS}}}base64EncryptedKey") or ""), OAEP_SHA256
    )
    instance_id = (
        root.findtext("{http://openrosa.org/xforms}meta/{http://openrosa.org/xforms}instanceID")
        or ""
    )
    names = [e.text or "" for e in root.iterfind(f"{{{ENVELOPE_NS}}}media/{{{ENVELOPE_NS}}}file")]
    names.append(root.findtext(f"{{{ENVELOPE_NS}}}encryptedXmlFile") or "")
    ivs = _ivs(instance_id, key, len(names))
    return {
        name.removesuffix(".enc"): _unaes(key, iv, files[name])
        for name, iv in zip(names, ivs, strict=True)
    }


# --- setup ------------------------------------------------------------------------------------


PHOTO_QUESTION = {
    "key": "photo",
    "type": "image",
    "label": {"kk": "Фото", "ru": "Фото", "en": "Photo"},
}


def encrypted_definition(public_key: str) -> dict[str, Any]:
    definition = almaty_definition(slug=f"secret-{uuid.uuid4().hex[:8]}")
    definition["questions"].append(PHOTO_QUESTION)
    definition["settings"] = {"public_key": public_key}
    return definition


@dataclass
class Form:
    questionnaire: Questionnaire
    token: str
    admin: dict[str, str]
    xform: bytes
    public: rsa.RSAPublicKey

    def instance(self, instance_id: uuid.UUID) -> bytes:
        answers = almaty_answers(photo="photo.jpg")
        respondent = {"group": "lawyer", "gender": "male", "age_band": "35-44"}
        return instance_xml(self.xform, answers, respondent=respondent, instance_id=instance_id)

    def submission(self, instance_id: uuid.UUID) -> tuple[bytes, Encrypted]:
        plain = self.instance(instance_id)
        sealed = encrypt(
            self.public, self.questionnaire, plain, f"uuid:{instance_id}", {"photo.jpg": PHOTO}
        )
        return plain, sealed


@pytest.fixture
async def form(app: FastAPI, client: httpx.AsyncClient, private_key: rsa.RSAPrivateKey) -> Form:
    public = private_key.public_key()
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(
        app, publish=True, definition=encrypted_definition(_spki(public))
    )
    token = await _collector(client, admin, questionnaire.id)
    download = await client.get(f"/openrosa/key/{token}/forms/{questionnaire.id}.xml")
    assert download.status_code == 200, download.text
    return Form(questionnaire, token, admin, download.content, public)


def _parts(sealed: Encrypted, *names: str) -> dict[str, tuple[str, bytes, str]]:
    return {name: (name, sealed.files[name], "application/octet-stream") for name in names}


# --- the key ----------------------------------------------------------------------------------


async def test_the_public_key_is_checked_and_carried_by_xform_and_xlsform(
    app: FastAPI, client: httpx.AsyncClient, form: Form
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    public = _spki(form.public)
    submission = parse_xml(form.xform).find(f".//{{{XFORMS}}}submission")
    assert submission is not None
    assert submission.get("base64RsaPublicKey") == public

    small = _spki(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())  # noqa: S505 - refused
    elliptic = _spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    for bad, words in (
        ("not base64!", "not base64"),
        (base64.b64encode(b"no key at all").decode(), "not a DER public key"),
        (small, "1024 bits"),
        (elliptic, "not an RSA key"),
    ):
        data = encrypted_definition(bad)
        refused = await client.post("/api/v1/questionnaires", json=data, headers=coordinator)
        assert error_locations(refused) == [["body", "settings", "public_key"]], bad
        assert words in refused.json()["errors"][0]["msg"]

    # The XLSForm export writes the key back; importing that workbook keeps it.
    exported = await client.get(
        f"/api/v1/questionnaires/{form.questionnaire.id}/xlsform", headers=coordinator
    )
    assert exported.status_code == 200, exported.text
    imported = await upload(client, coordinator, exported.content)
    assert imported.status_code == 201, imported.text
    assert imported.json()["settings"]["public_key"] == public
    rows = [["type", "name", "label"], ["text", "a", "A"]]
    keyed = workbook(rows, settings=[["form_id", "public_key"], ["secret", public]])
    assert (await upload(client, coordinator, keyed)).json()["settings"]["public_key"] == public
    small_book = workbook(rows, settings=[["form_id", "public_key"], ["secret", small]])
    assert error_locations(await upload(client, coordinator, small_book)) == [
        ["file", "settings", 2, "public_key"]
    ]


# --- submissions ------------------------------------------------------------------------------


async def test_an_encrypted_submission_is_stored_as_received_and_decrypts_from_the_export(
    client: httpx.AsyncClient, form: Form, private_key: rsa.RSAPrivateKey
) -> None:
    instance_id = uuid.uuid4()
    plain, sealed = form.submission(instance_id)
    # Split as Collect splits large submissions: the same envelope, the files spread out.
    first = await _post(client, form.token, sealed.envelope, **_parts(sealed, "photo.jpg.enc"))
    assert first.status_code == 201, first.text
    files = await client.get(f"/api/v1/responses/{instance_id}/attachments", headers=form.admin)
    assert files.status_code == 200, files.text
    received = {item["name"]: item["received"] for item in files.json()["items"]}
    assert received == {"submission.xml": True, "photo.jpg.enc": True, "submission.xml.enc": False}
    second = await _post(
        client, form.token, sealed.envelope, **_parts(sealed, "submission.xml.enc")
    )
    assert second.status_code == 202, second.text
    again = await _post(client, form.token, sealed.envelope, **_parts(sealed, *sealed.files))
    assert again.status_code == 202, again.text

    # The same instanceID with another envelope (another key: another content) is a conflict.
    _, other = form.submission(instance_id)
    conflict = await _post(client, form.token, other.envelope)
    assert conflict.status_code == 409, conflict.text
    assert "instanceID" in _message(conflict)

    stored = await client.get(f"/api/v1/responses/{instance_id}", headers=form.admin)
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["answers"] == {}
    assert body["channel"] == "mobile"
    assert body["language"] is None
    first_group = form.questionnaire.definition["respondent_groups"][0]["key"]
    assert body["respondent"] == {
        "group": first_group,  # the true one is inside the encrypted instance
        "category": "citizen",
        "gender": None,
        "age_band": None,
        "territory_code": None,
    }
    listed = await client.get(
        f"/api/v1/questionnaires/{form.questionnaire.id}/responses", headers=form.admin
    )
    assert [item["id"] for item in listed.json()["items"]] == [str(instance_id)]
    files = await client.get(f"/api/v1/responses/{instance_id}/attachments", headers=form.admin)
    items = {item["name"]: item for item in files.json()["items"]}
    assert set(items) == {"submission.xml", "photo.jpg.enc", "submission.xml.enc"}
    assert all(item["received"] for item in items.values())
    assert (
        items["photo.jpg.enc"]["sha256"]
        == hashlib.sha256(sealed.files["photo.jpg.enc"]).hexdigest()
    )
    envelope = await client.get(
        f"/api/v1/responses/{instance_id}/attachments/submission.xml", headers=form.admin
    )
    assert envelope.content == sealed.envelope  # as received

    # The owner exports the responses and decrypts them with the private key.
    export = await client.get(
        f"/api/v1/questionnaires/{form.questionnaire.id}/responses/export",
        params={"format": "zip"},
        headers=form.admin,
    )
    assert export.status_code == 200, export.text
    archive = zipfile.ZipFile(io.BytesIO(export.content))
    prefix = f"attachments/{instance_id}/"
    exported = {
        name.removeprefix(prefix): archive.read(name)
        for name in archive.namelist()
        if name.startswith(prefix)
    }
    assert set(exported) == {"submission.xml", "photo.jpg.enc", "submission.xml.enc"}
    clear = decrypt(private_key, exported.pop("submission.xml"), exported)
    assert clear == {"submission.xml": plain, "photo.jpg": PHOTO}
    # the responses.csv row has no answers
    lines = archive.read("responses.csv").decode("utf-8-sig").splitlines()
    assert len(lines) == 2 and lines[1].startswith(str(instance_id))
    header, row = lines[0].split(","), lines[1].split(",")
    assert row[header.index("trust_akimat")] == "" and row[header.index("photo")] == ""
    for fmt in ("csv", "xlsx", "ndjson"):
        other_export = await client.get(
            f"/api/v1/questionnaires/{form.questionnaire.id}/responses/export",
            params={"format": fmt},
            headers=form.admin,
        )
        assert other_export.status_code == 200, fmt
    assert json.loads(other_export.text.splitlines()[0])["answers"] == {}


async def test_plaintext_to_an_encrypted_form_and_envelopes_to_a_plaintext_one_are_refused(
    app: FastAPI, client: httpx.AsyncClient, form: Form
) -> None:
    instance_id = uuid.uuid4()
    plain, sealed = form.submission(instance_id)
    refused = await _post(client, form.token, plain)
    assert refused.status_code == 422, refused.text
    # in the form's language (ru), then the detail
    assert "эта форма принимает только зашифрованные ответы" in _message(refused)

    # The JSON API: single, multipart and batch.
    observer = await headers_for(app, Role.observer)
    url = f"/api/v1/questionnaires/{form.questionnaire.id}/responses"
    item = {"respondent": {"group": "lawyer"}, "answers": almaty_answers()}
    single = await client.post(url, json=item, headers=observer)
    assert single.status_code == 422, single.text
    assert single.json()["errors"][0]["type"] == "encrypted_only"
    multipart = await client.post(
        url,
        data={"response": '{"respondent": {"group": "lawyer"}, "answers": {"photo": "p.jpg"}}'},
        files={"p.jpg": ("p.jpg", PHOTO, "image/jpeg")},
        headers=observer,
    )
    assert multipart.status_code == 422, multipart.text
    assert multipart.json()["errors"][0]["type"] == "encrypted_only"
    batch = await client.post(f"{url}/batch", json={"responses": [item, item]}, headers=observer)
    assert batch.status_code == 200, batch.text
    assert [r["status"] for r in batch.json()["results"]] == ["invalid", "invalid"]
    assert batch.json()["results"][0]["errors"][0]["type"] == "encrypted_only"

    # An envelope to a plaintext form.
    plaintext = await create_questionnaire(app, publish=True)
    token = await _collector(client, form.admin, plaintext.id)
    misdirected = encrypt(form.public, plaintext, plain, f"uuid:{instance_id}", {})
    wrong = await _post(client, token, misdirected.envelope)
    assert wrong.status_code == 422, wrong.text
    assert "эта форма не принимает зашифрованные ответы" in _message(wrong)

    # Malformed envelopes: each refused, naming the problem; nothing stored.
    good = sealed.envelope.decode()
    key = good.split("<base64EncryptedKey>")[1].split("<")[0]
    for broken, words in (
        (good.replace(f"uuid:{instance_id}", "not-a-uuid"), "instanceID"),
        (good.replace(key, base64.b64encode(b"short").decode()), "holds 5 bytes"),
        (good.replace(key, "%%%"), "not base64"),
        (good.replace("<encryptedXmlFile>", "<secret>x</secret><encryptedXmlFile>"), "<secret>"),
        (good.replace("submission.xml.enc<", "submission.xml<"), "ending in .enc"),
        (good.replace("photo.jpg.enc", "../photo.jpg.enc"), "without '/'"),
        (good.replace("photo.jpg.enc", "submission.xml.enc"), "twice"),
        (good.split("<base64EncryptedElementSignature>")[0] + "</data>", "exactly one"),
        (good[:-20], "well-formed"),
    ):
        answer = await _post(client, form.token, broken.encode())
        assert answer.status_code == 400, (words, answer.text)
        assert words in _message(answer), (words, _message(answer))
    gone = await client.get(f"/api/v1/responses/{instance_id}", headers=form.admin)
    assert gone.status_code == 404


async def test_aggregates_of_an_encrypted_form_are_refused(
    app: FastAPI, client: httpx.AsyncClient, form: Form
) -> None:
    _, sealed = form.submission(uuid.uuid4())
    assert (await _post(client, form.token, sealed.envelope)).status_code == 201
    analyst = await headers_for(app, Role.analyst)
    figures = await client.get(
        f"/api/v1/questionnaires/{form.questionnaire.id}/aggregates", headers=analyst
    )
    assert figures.status_code == 409, figures.text
    assert "not aggregated" in figures.json()["detail"]
    coordinator = await headers_for(app, Role.coordinator)
    view = {"name": "secret", "dimensions": ["group"], "access": "public"}
    created = await client.post(
        f"/api/v1/questionnaires/{form.questionnaire.id}/aggregate-views",
        json=view,
        headers=coordinator,
    )
    assert created.status_code == 409, created.text


async def test_who_may_submit_and_read_encrypted_responses(
    app: FastAPI, client: httpx.AsyncClient, form: Form
) -> None:
    instance_id = uuid.uuid4()
    _, sealed = form.submission(instance_id)
    # A collector not bound to the form is told nothing of it.
    plaintext = await create_questionnaire(app, publish=True)
    stranger = await _collector(client, form.admin, plaintext.id)
    assert (await _post(client, stranger, sealed.envelope)).status_code == 404
    assert (await _post(client, form.token, sealed.envelope)).status_code == 201
    observer = await headers_for(app, Role.observer)
    for url in (
        f"/api/v1/responses/{instance_id}",
        f"/api/v1/questionnaires/{form.questionnaire.id}/responses",
        f"/api/v1/questionnaires/{form.questionnaire.id}/responses/export?format=zip",
    ):
        assert (await client.get(url, headers=observer)).status_code == 403, url
    files = f"/api/v1/responses/{instance_id}/attachments"
    assert (await client.get(files, headers=observer)).status_code == 403
    assert (await client.get(files)).status_code == 401


async def test_odks_engine_loads_the_encrypted_form(
    client: httpx.AsyncClient, form: Form, database_url: str, tmp_path: Path
) -> None:
    """ODK's XForms engine loads the encrypted form from Kenes and fills it; it sends its
    instance unencrypted, which Kenes refuses (422) rather than store it in plaintext."""
    filled = {"group": "lawyer", "aware": "partly", "trust_akimat": 2, "suggestions": "Нет"}
    with running_server(database_url, tmp_path / "server.log") as server:
        seen = odk_engine_fills(
            f"{server.base}/openrosa/key/{form.token}", form.questionnaire.slug, filled, "ru"
        )
    print("xforms engine:", json.dumps({k: seen[k] for k in ("payload_status", "submissions")}))  # noqa: T201
    assert [s["status"] for s in seen["submissions"]] == [422, 422]
    assert "encrypt" in seen["submissions"][0]["body"]
    listed = await client.get(
        f"/api/v1/questionnaires/{form.questionnaire.id}/responses", headers=form.admin
    )
    assert listed.json()["items"] == []


async def test_twenty_copies_at_once_are_stored_once(client: httpx.AsyncClient, form: Form) -> None:
    instance_id = uuid.uuid4()
    _, sealed = form.submission(instance_id)
    parts = _parts(sealed, *sealed.files)
    answers = await asyncio.gather(
        *(_post(client, form.token, sealed.envelope, **parts) for _ in range(20))
    )
    assert sorted(answer.status_code for answer in answers) == [201] + [202] * 19
    files = await client.get(f"/api/v1/responses/{instance_id}/attachments", headers=form.admin)
    assert [item["received"] for item in files.json()["items"]] == [True] * 3
