"""The examples of `shared/revicom-api/*.md`, read from the pages themselves.

The docs are the contract, so tests take their examples from the files rather than copies.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository is cloned with shared/ beside it; REVICOM_API_DOCS points elsewhere if not.
DOCS = Path(
    os.environ.get(
        "REVICOM_API_DOCS", Path(__file__).resolve().parents[2] / "shared" / "revicom-api"
    )
)
CHANNEL_PAGES = ("sms.md", "flashcall.md", "voicecode.md", "whatsapp.md")
_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_CURL = re.compile(r"curl -X POST '(?P<url>[^']+)'.*?-d '(?P<body>.*?)'\s*$", re.DOTALL)


@dataclass(frozen=True)
class RequestExample:
    page: str
    kind: str  # "json" or "curl"
    path: str  # /api/v1/...
    auth: str  # the Authorization header's scheme: Basic or Bearer
    body: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.page}:{self.path}:{self.kind}"


def _blocks(page: str) -> list[str]:
    return _BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def request_examples() -> list[RequestExample]:
    examples = []
    for page in CHANNEL_PAGES:
        for block in _blocks(page):
            if block.startswith("POST "):
                path = block.split()[1].split("://", 1)[1].split("/", 1)[1]
                auth = re.search(r"Authorization: (\w+)", block)
                body = json.loads(block[block.index("\n[") :])
                examples.append(RequestExample(page, "json", "/" + path, _group(auth), body))
            elif block.startswith("curl "):
                match = _CURL.search(block)
                assert match, block
                path = "/" + match["url"].split("://", 1)[1].split("/", 1)[1]
                auth = re.search(r"Authorization: (\w+)", block)
                body = json.loads(match["body"])
                examples.append(RequestExample(page, "curl", path, _group(auth), body))
    return examples


def whatsapp_content_examples() -> list[dict[str, Any]]:
    """The `content` objects shown on the WHATSAPP page (text, image, document, variants)."""
    found = []
    for block in _blocks("whatsapp.md"):
        if block.lstrip().startswith("{") and '"contentType"' in block:
            found.append(json.loads(block))
    return found


def error_examples() -> list[tuple[str, int, str]]:
    """(page, code, msg) of every error object shown on the channel pages."""
    found = []
    for page in CHANNEL_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for code, msg in re.findall(r'"code": (\d{4}),\s*"msg": "([^"]*)"', text):
            found.append((page, int(code), msg))
    return found


def _group(match: re.Match[str] | None) -> str:
    assert match is not None
    return match.group(1)
