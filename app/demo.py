"""`kenes demo-data`: a realistic data set to explore; loading it twice changes nothing."""

from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from app.services import consultations, responses
from app.services.territories import read_territory_csv, upsert_territories

DATA_DIR = Path(__file__).resolve().parent / "data"


async def load_demo_data(session: AsyncSession) -> dict[str, int]:
    """Add what is missing of the demo data set; returns how many rows of each kind were added."""
    territories = await upsert_territories(
        session, read_territory_csv(DATA_DIR / "territories.csv")
    )
    elections = await consultations.load_demo(session, DATA_DIR / "demo_election.json")
    survey = await responses.load_demo(session, DATA_DIR / "almaty_participation.json")
    return {"territories": territories, **elections, **survey}
