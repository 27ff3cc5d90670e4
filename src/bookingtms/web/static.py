"""/static: the pages' CSS, JS and images, cached for a year (their URLs carry a content hash)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from bookingtms.web.templating import STATIC


class _LongLivedStatic(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            versioned = b"v=" in scope.get("query_string", b"")
            response.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if versioned
                                                 else "public, max-age=300")
        return response


def mount(app: FastAPI) -> None:
    app.mount("/static", _LongLivedStatic(directory=STATIC), name="static")
