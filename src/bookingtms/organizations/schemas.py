from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrgRole = Literal["super-admin", "org-admin", "admin", "manager", "staff"]


class OrganizationSettingsUpdate(BaseModel):
    """Only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    require_mfa_for: list[OrgRole] | None = Field(
        None, max_length=5, description="Roles whose members must use two-step verification (TOTP) to sign in; "
                                        "those not enrolled yet get a token that can only enrol.")


class OrganizationSettings(BaseModel):
    require_mfa_for: list[OrgRole]
