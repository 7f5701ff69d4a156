"""What the campaign pages show: the campaigns, and one campaign's iterations."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries.al_campaigns import CampaignRow, campaign_row, summary


@dataclass(frozen=True)
class CampaignPage:
    """A campaign and its ``al_iteration_summary`` rows, by iteration."""

    campaign: CampaignRow
    summary: pd.DataFrame


def campaign_page(session: Session, name: str) -> CampaignPage:
    """The page of the campaign ``name``.

    Raises:
        InvalidInput: the name holds a NUL character.
        NotFound: no campaign has this name.
    """
    if "\x00" in name:
        # PostgreSQL text cannot hold NUL: the driver would refuse the parameter.
        raise InvalidInput("A campaign name holds no NUL character; the campaigns page lists them.")
    campaign = campaign_row(session, name)
    if campaign is None:
        raise NotFound(f"No campaign is named {name!r}; the campaigns page lists them.")
    return CampaignPage(campaign, summary(session, name))
