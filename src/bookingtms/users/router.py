from fastapi import APIRouter

router = APIRouter(prefix="/v1/users", tags=["users"])
