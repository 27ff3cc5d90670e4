from pydantic import BaseModel, ConfigDict, Field, model_validator


class SessionEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capacity_total: int | None = Field(None, ge=0, le=10_000)
    is_closed: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> "SessionEdit":
        if self.capacity_total is None and self.is_closed is None:
            raise ValueError("give capacity_total and/or is_closed")
        return self
