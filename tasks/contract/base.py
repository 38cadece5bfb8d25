"""The base of every API object: strict types, unknown fields refused, JSON names as-is."""

from pydantic import BaseModel, ConfigDict


class ApiObject(BaseModel):
    """Strict so that `"ttl": "60"` or `"shortUrl": "true"` is an error here rather than a
    guess about the server's coercion; unknown fields are refused so a misspelt optional
    (`calbackUrl`) is caught instead of silently dropped."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
