from fastapi import APIRouter, Depends

from bookingtms.auth import service
from bookingtms.auth.schemas import LoginIn
from bookingtms.db.engine import tenant_transaction
from bookingtms.http.principal import Principal, current_principal

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/login")
async def login(body: LoginIn):
    return await service.login(body.email, body.password)


@router.get("/me")
async def me(p: Principal = Depends(current_principal)):
    async with tenant_transaction(p.db_context()) as db:
        return await service.me(db, p.user_id)
