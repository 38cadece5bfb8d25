"""WHATSAPP (`whatsapp.md`): text, image or document content with header, footer, buttons."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from tasks.contract.base import ApiObject
from tasks.contract.common import Addressing, Scheduling
from tasks.contract.fields import (
    HttpUrl,
    NonBlankText,
    Utf8Text,
    array_like,
    object_like,
    rule_error,
)

Text60 = Annotated[str, Field(min_length=1, max_length=60)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000)]


def _check_begins_with_http(value: str) -> str:
    if not value.startswith("http"):
        raise rule_error("button_url", "must begin with http")
    return value


class Header(ApiObject):
    text: Text60 | None = None
    documentUrl: HttpUrl | None = None
    documentName: NonBlankText | None = None
    imageUrl: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [k for k in ("text", "documentUrl", "imageUrl") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise rule_error(
                "header_kind",
                "must have exactly one of text, documentUrl (with optional documentName) or "
                "imageUrl",
            )
        if self.documentName is not None and self.documentUrl is None:
            raise rule_error("header_kind", "documentName is only allowed with documentUrl")
        return self


class Footer(ApiObject):
    text: Text60


class Button(ApiObject):
    text: Annotated[str, Field(min_length=1, max_length=20)]
    url: Annotated[Text1000, AfterValidator(_check_begins_with_http)] | None = None
    phone: Text1000 | None = None
    payload: Text1000 | None = None

    @property
    def is_link(self) -> bool:
        return self.url is not None or self.phone is not None

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if self.payload is not None and self.is_link:
            raise rule_error("button_kind", "payload is not allowed beside url or phone")
        if self.url is not None and self.phone is not None:
            raise rule_error("button_kind", "a link button has either url or phone, not both")
        if self.payload is None and not self.is_link:
            raise rule_error("button_kind", "needs url or phone (link button) or payload (text)")
        return self


class Decorations(ApiObject):
    """Header, footer and buttons: validated the same way for every content type."""

    header: Header | None = None
    footer: Footer | None = None
    buttons: (
        Annotated[
            list[Button],
            Field(min_length=1, max_length=3),
            array_like('[{"text": "Yes", "payload": "yes"}] (1 to 3 buttons)'),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _button_mix(self) -> Self:
        # With at most one url and one phone, "at most two link buttons" holds by itself,
        # and "at most three text buttons" is the list's own limit.
        if not self.buttons:
            return self
        links = [b for b in self.buttons if b.is_link]
        if links and len(links) != len(self.buttons):
            raise rule_error(
                "button_mix",
                "all buttons must be of one kind: link (url/phone) or text (payload)",
                field="buttons",
            )
        if sum(b.url is not None for b in self.buttons) > 1:
            raise rule_error("button_mix", "at most one button may have a url", field="buttons")
        if sum(b.phone is not None for b in self.buttons) > 1:
            raise rule_error("button_mix", "at most one button may have a phone", field="buttons")
        return self


class TextContent(Decorations):
    contentType: Literal["text"]
    text: Annotated[Utf8Text, Field(min_length=1, max_length=1000)]


class ImageContent(Decorations):
    contentType: Literal["image"]
    imageUrl: HttpUrl
    imageName: NonBlankText


class DocumentContent(Decorations):
    contentType: Literal["document"]
    documentUrl: HttpUrl
    documentName: NonBlankText


CONTENT_TYPES = ("text", "image", "document")


def _content_type(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("contentType")
    else:
        kind = getattr(value, "contentType", None)
    # Any JSON value may stand here: a list or an object is unhashable, so no `in` on a set.
    return f"contentType={kind}" if isinstance(kind, str) and kind in CONTENT_TYPES else None


WhatsappContent = Annotated[
    Annotated[TextContent, Tag("contentType=text")]
    | Annotated[ImageContent, Tag("contentType=image")]
    | Annotated[DocumentContent, Tag("contentType=document")],
    Discriminator(
        _content_type,
        custom_error_type="content_type",
        custom_error_context={"field": "contentType"},
        custom_error_message="must be one of: text, image, document",
    ),
    object_like(
        '{"contentType": "text", "text": "…"} (or an image or document content with '
        "its url and name)"
    ),
]


class WhatsappMessage(Addressing, Scheduling):
    channel: ClassVar[str] = "WHATSAPP"

    channelType: Literal["WHATSAPP"]
    content: WhatsappContent
