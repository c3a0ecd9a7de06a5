"""Territories: hierarchy rules, subtree queries at any depth, CSV import all or nothing."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import col, select

from app.db import session_scope
from app.models.auth import AuditEvent, Role
from app.models.territories import Territory
from app.services.territories import (
    in_subtree,
    read_territory_csv,
    upsert_territories,
)
from tests.factories import ROOT_DIR, headers_for

HEADER = "code,parent_code,level,name_kk,name_ru,name_en\n"
# Four levels, plus a region whose code is a prefix of another's ("11" / "110").
TREE = HEADER + (
    "11,,region,Ақмола облысы,Акмолинская область,Akmola Region\n"
    "110,,region,Басқа облыс,Другая область,Other Region\n"
    "1120,11,district,Целиноград ауданы,Целиноградский район,Tselinograd District\n"
    "112010,1120,rural_district,Ақмол а.о.,Акмолинский с.о.,Akmol Rural District\n"
    "112010001,112010,settlement,Ақмол,Акмол,Akmol\n"
    "112010002,112010,settlement,Жаңа ауыл,Новое село,New Village\n"
    "1130,11,district,Аршалы ауданы,Аршалынский район,Arshaly District\n"
    "1101,110,district,Басқа аудан,Другой район,Other District\n"
)


def csv_file(text: str, name: str = "territories.csv") -> dict[str, Any]:
    return {"file": (name, text.encode(), "text/csv")}


async def import_tree(client: httpx.AsyncClient, headers: dict[str, str], text: str = TREE) -> None:
    response = await client.post(
        "/api/v1/territories/import", files=csv_file(text), headers=headers
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def _codes(app: FastAPI, *where: Any) -> set[str]:
    async with app.state.sessionmaker() as session:
        return set((await session.exec(select(Territory.code).where(*where))).all())


async def test_create_read_and_duplicate(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    body = {"code": "750000000", "name": {"kk": "Алматы", "en": "Almaty"}, "level": "city"}
    created = await client.post("/api/v1/territories", json=body, headers=coordinator)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/territories/750000000"
    assert created.json()["parent_code"] is None
    got = await client.get("/api/v1/territories/750000000", headers=coordinator)
    assert got.json()["name"] == {"kk": "Алматы", "en": "Almaty"}
    again = await client.post("/api/v1/territories", json=body, headers=coordinator)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    # A city of republican significance may have districts.
    district = {"code": "751110000", "name": {"ru": "Алатауский район"}, "level": "district"}
    child = await client.post(
        "/api/v1/territories", json={**district, "parent_code": "750000000"}, headers=coordinator
    )
    assert child.status_code == 201
    assert await _codes(app, in_subtree(Territory.code, "750000000")) == {"750000000", "751110000"}
    async with app.state.sessionmaker() as session:
        actions = (await session.exec(select(AuditEvent.action))).all()
    assert sorted(a for a in actions if a.startswith("territory")) == ["territory.create"] * 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "9", "level": "settlement"}, "level"),  # no parent
        ({"code": "9", "level": "district", "parent_code": "nowhere"}, "parent_code"),
        ({"code": "9", "level": "region", "parent_code": "1120"}, "parent_code"),  # upward
        ({"code": "9", "level": "district", "parent_code": "112010001"}, "parent_code"),
        ({"code": "9", "level": "rural_district", "parent_code": "112010"}, "parent_code"),
        ({"code": "has space", "level": "region"}, "code"),
        ({"code": "9", "level": "planet"}, "level"),
    ],
)
async def test_hierarchy_rules(
    client: httpx.AsyncClient, coordinator: dict[str, str], body: dict[str, Any], field: str
) -> None:
    await import_tree(client, coordinator)
    response = await client.post(
        "/api/v1/territories", json={"name": {"en": "X"}, **body}, headers=coordinator
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"][0]["loc"]


async def test_subtree_condition_at_every_depth(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    whole = {"11", "1120", "112010", "112010001", "112010002", "1130"}
    assert await _codes(app, in_subtree(Territory.code, "11")) == whole  # not "110" and below
    assert await _codes(app, in_subtree(Territory.code, "1120")) == {
        "1120",
        "112010",
        "112010001",
        "112010002",
    }
    assert await _codes(app, in_subtree(Territory.code, "112010001")) == {"112010001"}
    assert await _codes(app, in_subtree(Territory.code, "unknown")) == set()
    # The condition composes on any column holding a territory code, such as parent_code.
    children_in_11 = await _codes(app, in_subtree(Territory.parent_code, "11"))
    assert children_in_11 == whole - {"11"}


async def test_list_filters_and_pages(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    settlements = await client.get(
        "/api/v1/territories", params={"level": "settlement"}, headers=coordinator
    )
    assert [t["code"] for t in settlements.json()["items"]] == ["112010001", "112010002"]
    children = await client.get(
        "/api/v1/territories", params={"parent_code": "11"}, headers=coordinator
    )
    assert [t["code"] for t in children.json()["items"]] == ["1120", "1130"]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/territories", params=params, headers=coordinator)).json()
        seen += [item["code"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [line.split(",")[0] for line in TREE.splitlines()[1:]]  # creation order

    bad = await client.get("/api/v1/territories", params={"cursor": "x%%"}, headers=coordinator)
    assert bad.status_code == 400
    assert (
        await client.get("/api/v1/territories", params={"limit": 501}, headers=coordinator)
    ).status_code == 422
    assert (
        await client.get("/api/v1/territories", params={"level": "moon"}, headers=coordinator)
    ).status_code == 422


async def test_import_refuses_the_whole_file_for_one_bad_line(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    bad = HEADER + (
        "11,,region,Ақмола,Акмолинская,Akmola\n"  # line 2
        "1120,11,district,Целиноград,Целиноградский,Tselinograd\n"  # line 3
        "1121,1120,district,Аудан,Район,District\n"  # line 4: district under a district
        "1122,99,district,Аудан,Район,District\n"  # line 5: unknown parent
        "1123,11,district,,,\n"  # line 6: no name
        "1120,11,district,Қайта,Снова,Again\n"  # line 7: repeats line 3
    )
    response = await client.post(
        "/api/v1/territories/import", files=csv_file(bad), headers=coordinator
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["loc"] for error in response.json()["errors"]] == [
        ["file", 4],
        ["file", 5],
        ["file", 6],
        ["file", 7],
    ]
    assert await _codes(app) == set()  # nothing imported, not even the good lines

    await import_tree(client, coordinator)
    existing = HEADER + "999,,region,Жаңа,Новая,New\n1120,11,district,Ц,Ц,T\n"
    again = await client.post(
        "/api/v1/territories/import", files=csv_file(existing), headers=coordinator
    )
    assert again.status_code == 422
    assert again.json()["errors"] == [
        {"loc": ["file", 3], "msg": "territory 1120 exists", "type": "value_error"}
    ]
    assert "999" not in await _codes(app)


@pytest.mark.parametrize(
    "content",
    [
        b"code,parent,level\n1,,region\n",  # wrong header
        "code,parent_code,level,name_kk,name_ru,name_en\n1,,region,Ә\n".encode(),  # short line
        "code,parent_code,level,name_kk,name_ru,name_en\n1,,region,Ә,Р,E\n".encode("utf-16"),
        b"",
        HEADER.encode(),  # no data lines
    ],
)
async def test_import_refuses_malformed_files(
    client: httpx.AsyncClient, coordinator: dict[str, str], content: bytes
) -> None:
    response = await client.post(
        "/api/v1/territories/import",
        files={"file": ("t.csv", content, "text/csv")},
        headers=coordinator,
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][0] == "file"


async def test_import_accepts_existing_parents_and_a_bom(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    more = HEADER + "1131,1130,rural_district,Жібек жолы,Жибек жолы,Zhibek Zholy\n"
    response = await client.post(
        "/api/v1/territories/import",
        files={"file": ("t.csv", b"\xef\xbb\xbf" + more.encode(), "text/csv")},
        headers=coordinator,
    )
    assert response.json() == {"imported": 1}
    assert "1131" in await _codes(app, in_subtree(Territory.code, "11"))
    async with app.state.sessionmaker() as session:
        imports = (
            await session.exec(
                select(func.count()).where(col(AuditEvent.action) == "territory.import")
            )
        ).one()
    assert imports == 2


async def test_patch_renames_and_moves_a_subtree(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    renamed = await client.patch(
        "/api/v1/territories/1120", json={"name": {"en": "Tselinograd"}}, headers=coordinator
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == {"en": "Tselinograd"}

    moved = await client.patch(
        "/api/v1/territories/1120", json={"parent_code": "110"}, headers=coordinator
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["parent_code"] == "110"
    assert await _codes(app, in_subtree(Territory.code, "11")) == {"11", "1130"}
    assert {"1120", "112010", "112010001", "112010002"} <= await _codes(
        app, in_subtree(Territory.code, "110")
    )

    for change, status in [
        ({"parent_code": "112010001"}, 422),  # under its own descendant
        ({"parent_code": None}, 422),  # a district needs a parent
        ({"parent_code": "1101"}, 422),  # a district under a district
        ({"name": None}, 422),
        ({"level": "region"}, 422),  # the level is fixed
    ]:
        response = await client.patch("/api/v1/territories/1120", json=change, headers=coordinator)
        assert response.status_code == status, (change, response.text)
    missing = await client.patch("/api/v1/territories/nope", json={}, headers=coordinator)
    assert missing.status_code == 404


async def test_roles(app: FastAPI, client: httpx.AsyncClient) -> None:
    body = {"code": "1", "name": {"en": "R"}, "level": "region"}
    for role in (Role.observer, Role.analyst):
        headers = await headers_for(app, role)
        assert (
            await client.post("/api/v1/territories", json=body, headers=headers)
        ).status_code == 403
        assert (await client.get("/api/v1/territories", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/territories")).status_code == 401
    admin = await headers_for(app, Role.admin)
    assert (await client.post("/api/v1/territories", json=body, headers=admin)).status_code == 201


# --- region and district roll-up codes ---------------------------------------------------------


async def _rollup(app: FastAPI) -> dict[str, tuple[str | None, str | None]]:
    """code -> (region_code, district_code) as stored."""
    async with app.state.sessionmaker() as session:
        rows = await session.exec(
            select(Territory.code, Territory.region_code, Territory.district_code)
        )
        return {code: (region, district) for code, region, district in rows}


def _expected_rollup(
    parents: dict[str, str | None], levels: dict[str, str]
) -> dict[str, tuple[str | None, str | None]]:
    """The same codes by walking parent links (independent of paths and of the service)."""
    expected: dict[str, tuple[str | None, str | None]] = {}
    for code in parents:
        chain = [code]
        while parents[chain[-1]] is not None:
            chain.append(parents[chain[-1]])  # type: ignore[arg-type]
        districts = [c for c in chain if levels[c] == "district"]
        expected[code] = (chain[-1], districts[0] if districts else None)
    return expected


async def _tree(app: FastAPI) -> tuple[dict[str, str | None], dict[str, str]]:
    async with app.state.sessionmaker() as session:
        rows = (
            await session.exec(select(Territory.code, Territory.parent_code, Territory.level))
        ).all()
    return {code: parent for code, parent, _ in rows}, {code: level for code, _, level in rows}


async def test_region_and_district_codes_after_import_and_create(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    stored = await _rollup(app)
    assert stored["11"] == ("11", None)
    assert stored["1120"] == ("11", "1120")
    assert stored["112010"] == ("11", "1120")
    assert stored["112010001"] == ("11", "1120")
    assert stored["1101"] == ("110", "1101")
    # A city of regional significance with a rural district of its own: no district above.
    for body in (
        {"code": "1150", "name": {"en": "Kosshy"}, "level": "city", "parent_code": "11"},
        {"code": "115010", "name": {"en": "R"}, "level": "rural_district", "parent_code": "1150"},
        {"code": "115010001", "name": {"en": "S"}, "level": "settlement", "parent_code": "115010"},
        {"code": "1121", "name": {"en": "D"}, "level": "rural_district", "parent_code": "1120"},
        {"code": "75", "name": {"en": "Almaty"}, "level": "city"},
    ):
        created = await client.post("/api/v1/territories", json=body, headers=coordinator)
        assert created.status_code == 201, created.text
    stored = await _rollup(app)
    assert stored["1150"] == ("11", None)
    assert stored["115010001"] == ("11", None)
    assert stored["1121"] == ("11", "1120")
    assert stored["75"] == ("75", None)
    assert stored == _expected_rollup(*await _tree(app))
    read = (await client.get("/api/v1/territories/112010001", headers=coordinator)).json()
    assert (read["region_code"], read["district_code"]) == ("11", "1120")


async def test_moves_recompute_region_and_district_codes_across_the_subtree(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await import_tree(client, coordinator)
    city = {"code": "1150", "name": {"en": "Kosshy"}, "level": "city", "parent_code": "11"}
    assert (await client.post("/api/v1/territories", json=city, headers=coordinator)).is_success

    async def move(code: str, parent: str) -> None:
        response = await client.patch(
            f"/api/v1/territories/{code}", json={"parent_code": parent}, headers=coordinator
        )
        assert response.status_code == 200, response.text
        stored = await _rollup(app)
        body = response.json()
        assert (body["region_code"], body["district_code"]) == stored[code]
        assert stored == _expected_rollup(*await _tree(app))

    # A rural district to another district of the same region: its settlements follow.
    await move("112010", "1130")
    assert (await _rollup(app))["112010002"] == ("11", "1130")
    # ... to a district of another region.
    await move("112010", "1101")
    assert (await _rollup(app))["112010001"] == ("110", "1101")
    # ... under a city with no district: no district any more.
    await move("112010", "1150")
    assert (await _rollup(app))["112010001"] == ("11", None)
    # A whole district to another region keeps itself as its descendants' district.
    await move("112010", "1120")
    await move("1120", "110")
    stored = await _rollup(app)
    assert stored["1120"] == ("110", "1120")
    assert stored["112010002"] == ("110", "1120")
    assert stored["1130"] == ("11", "1130")
    # A city of regional significance moves with its subtree; untouched territories stay.
    await move("1150", "110")
    assert (await _rollup(app))["1150"] == ("110", None)


async def test_demo_territories_get_region_and_district_codes(app: FastAPI) -> None:
    rows = read_territory_csv(ROOT_DIR / "app" / "data" / "territories.csv")
    async for session in session_scope(app.state.sessionmaker):
        assert await upsert_territories(session, rows[:20]) == 20
    async for session in session_scope(app.state.sessionmaker):
        assert await upsert_territories(session, rows) == len(rows) - 20
    stored = await _rollup(app)
    assert stored == _expected_rollup(*await _tree(app))
    assert any(district for _, district in stored.values())
