"""Pictures of venues and activities: checking an upload, resizing it, and keeping it.

Checking: at most MAX_BYTES (the route refuses a bigger body before reading it, see web/media.py);
decoded by Pillow, never trusted by its name or declared type: `Image.open` + `verify()` on the
bytes, then opened again to work on. Only JPEG, PNG and WebP. The pixel count is read from the
header and refused above MAX_PIXELS before anything is decompressed (decompression bombs).

Resizing: EXIF orientation applied, then the picture fits FULL_SIZE x FULL_SIZE (never enlarged)
plus a THUMB_SIZE thumbnail, both re-encoded as WebP without EXIF or XMP (GPS positions and camera
serials stay on the phone). Re-encoding also drops anything hidden after the image data.

Keeping: `<organization id>/<sha256 of the full picture>.webp` and `...-thumb.webp` beside it
(content-addressed and tenant-prefixed: a key never changes meaning, so it is served as immutable),
under `<data dir>/media/` or in an S3-compatible bucket when BOOKINGTMS_S3_BUCKET is set (boto3,
called in a thread). The database keeps the picture's path, `/media/<key>`."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import uuid
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile

from bookingtms.config import get_settings
from bookingtms.errors import AppError, ValidationFailed

MAX_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000          # 40 megapixels: any camera's photo; a bomb declares far more
FULL_SIZE = 1600
THUMB_SIZE = 400
FORMATS = {"JPEG", "PNG", "WEBP"}
WEBP_QUALITY = 82
CACHE_CONTROL = "public, max-age=31536000, immutable"
MEDIA_PREFIX = "/media/"
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg"}
# <organization uuid>/<sha256>[-thumb].<ext>: nothing else is a key (no dots, no slashes to climb with).
KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/([0-9a-f]{64})(-thumb)?\.(webp|jpg)$")


class ImageTooLarge(AppError):
    status, code, title = 413, "image_too_large", "Picture too large"


def too_large() -> ImageTooLarge:
    return ImageTooLarge(f"The picture is larger than {MAX_BYTES // (1024 * 1024)} MB; choose a smaller one.",
                         field="image")


def refused(message: str, code: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, field="image", errors=[{"field": "image", "message": message}])


# ----------------------------------------------------------------------------------------------
# Checking and resizing
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picture:
    full: bytes
    thumb: bytes
    extension: str
    width: int
    height: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.full).hexdigest()


async def read_upload(upload: UploadFile) -> bytes:
    """The uploaded bytes, refusing more than MAX_BYTES without reading past the limit."""
    if upload.size is not None and upload.size > MAX_BYTES:
        raise too_large()
    data = await upload.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise too_large()
    if not data:
        raise refused("The file is empty; choose a JPEG, PNG or WebP picture.", "image_empty")
    return data


def _flattened(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the picture has transparency (palette, LA, CMYK... converted)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA") or image.mode.endswith("A") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # No exif= / xmp= given: Pillow writes none. The colour profile stays (it is not about anyone).
    image.save(out, "WEBP", quality=WEBP_QUALITY, method=4, icc_profile=image.info.get("icc_profile"))
    return out.getvalue()


def process(data: bytes) -> Picture:
    """Checks and re-encodes an upload (CPU-bound: run it in a thread). Raises ValidationFailed
    (field `image`) with a message a person understands."""
    not_an_image = refused("This file is not a picture we can read; choose a JPEG, PNG or WebP file.", "not_an_image")
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the pixel check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))  # reads the header only
        with probe:
            if probe.format not in FORMATS:
                raise refused(f"{probe.format or 'This'} pictures are not accepted; choose a JPEG, PNG or WebP file.",
                              "image_type")
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise refused(f"The picture is {width} x {height} pixels, more than we accept "
                              f"({MAX_PIXELS // 1_000_000} megapixels at most).", "image_dimensions")
            probe.verify()
        with Image.open(io.BytesIO(data)) as source:  # verify() leaves the image unusable: open again
            source.seek(0)  # an animated picture keeps its first frame
            image = ImageOps.exif_transpose(source)
            image = _flattened(image)
            image.load()
    except ValidationFailed:
        raise
    except Image.DecompressionBombError:
        raise refused(f"The picture has far more pixels than we accept ({MAX_PIXELS // 1_000_000} megapixels "
                      f"at most).", "image_dimensions") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            IndexError, TypeError):
        raise not_an_image from None
    full = image.copy()
    full.thumbnail((FULL_SIZE, FULL_SIZE), Image.Resampling.LANCZOS)
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    return Picture(full=_encode(full), thumb=_encode(thumb), extension="webp", width=full.width, height=full.height)


# ----------------------------------------------------------------------------------------------
# Keys and URLs
# ----------------------------------------------------------------------------------------------
def keys_for(org_id: uuid.UUID, picture: Picture) -> tuple[str, str]:
    base = f"{org_id}/{picture.digest}"
    return f"{base}.{picture.extension}", f"{base}-thumb.{picture.extension}"


def valid_key(key: str) -> bool:
    return KEY.fullmatch(key) is not None


def url_of(key: str) -> str:
    return MEDIA_PREFIX + key


def key_of(url: str | None) -> str | None:
    """The storage key behind one of our picture URLs (None for anything else)."""
    if not url or not url.startswith(MEDIA_PREFIX):
        return None
    key = url[len(MEDIA_PREFIX):]
    return key if valid_key(key) else None


def thumb_key(key: str) -> str:
    stem, _, ext = key.rpartition(".")
    return f"{stem}-thumb.{ext}"


def content_type(key: str) -> str:
    return CONTENT_TYPES[key.rpartition(".")[2]]


def etag(key: str) -> str:
    found = KEY.fullmatch(key)
    assert found
    return f'"{found.group(1)[:32]}{found.group(2) or ""}"'


# ----------------------------------------------------------------------------------------------
# Storage: the data dir, or an S3-compatible bucket
# ----------------------------------------------------------------------------------------------
class LocalStorage:
    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        if not valid_key(key):
            raise ValueError("not a media key")
        path = (self.root / key).resolve()
        if self.root not in path.parents:  # belt and braces: the key pattern already forbids climbing
            raise ValueError("not a media key")
        return path

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():  # content-addressed: the same key holds the same bytes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # readers never see half a file

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def _delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, ValueError):
            pass

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)


class S3Storage:
    """An S3-compatible bucket (AWS, MinIO, R2...). Credentials come the usual AWS way
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE / instance role)."""

    def __init__(self, bucket: str, endpoint_url: str | None, region: str | None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                   config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                 connect_timeout=5, read_timeout=20))

    def _write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key),
                               CacheControl=CACHE_CONTROL)

    def _read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)


@lru_cache(maxsize=8)
def _storage(bucket: str | None, endpoint_url: str | None, region: str | None, data_dir: str):
    if bucket:
        return S3Storage(bucket, endpoint_url, region)
    return LocalStorage(Path(data_dir) / "media")


def storage() -> LocalStorage | S3Storage:
    """Where pictures live, as configured now (one client per configuration)."""
    settings = get_settings()
    return _storage(settings.s3_bucket, settings.s3_endpoint_url, settings.s3_region, str(settings.data_dir))


async def store(org_id: uuid.UUID, picture: Picture) -> str:
    """Keeps both sizes; answers the picture's URL (/media/<key>)."""
    full_key, small_key = keys_for(org_id, picture)
    target = storage()
    await target.put(small_key, picture.thumb)  # the thumbnail first: a stored full picture has its thumbnail
    await target.put(full_key, picture.full)
    return url_of(full_key)


async def discard(url: str | None) -> None:
    """Deletes a picture's files (both sizes); for pictures no row refers to any more."""
    key = key_of(url)
    if key is None:
        return
    target = storage()
    await target.delete(key)
    await target.delete(thumb_key(key))
