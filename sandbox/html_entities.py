"""Telegram's HTML parse mode: markup in, plain text and MessageEntity list out.

Follows TDLib's parser: only Telegram's tags, strictly nested; &lt; &gt; &amp; &quot; and numeric
character references are decoded, any other '&' stays literal text. Offsets and lengths are in
UTF-16 code units, as in the Bot API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Entity = dict[str, Any]


class EntityParseError(ValueError):
    """Becomes "Bad Request: can't parse entities: <message>"."""


SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
ATTRIBUTE_TAGS = {"a", "span", "blockquote", "tg-emoji"}
NAMED_CHARACTERS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_TAG_NAME = re.compile(r"[a-zA-Z0-9-]*")
_ATTRIBUTE_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_CHARACTER_REFERENCE = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    offset: int
    attributes: dict[str, str]
    pre_language: str | None = None


def parse_html(markup: str) -> tuple[str, list[Entity]]:
    parser = _HtmlParser(markup)
    return parser.parse()


class _HtmlParser:
    def __init__(self, markup: str) -> None:
        self.markup = markup
        self.position = 0
        self.text: list[str] = []
        self.text_length = 0  # UTF-16 units emitted so far
        self.open_tags: list[_OpenTag] = []
        self.entities: list[Entity] = []

    def parse(self) -> tuple[str, list[Entity]]:
        markup = self.markup
        while self.position < len(markup):
            char = markup[self.position]
            if char == "&":
                self._character_reference()
            elif char == "<":
                if markup.startswith("</", self.position):
                    self._end_tag()
                else:
                    self._start_tag()
            else:
                self._emit(char)
                self.position += 1
        if self.open_tags:
            name = self.open_tags[-1].name
            raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{name}"')
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self.text), self.entities

    def _emit(self, chunk: str) -> None:
        self.text.append(chunk)
        self.text_length += utf16_length(chunk)

    def _byte_offset(self) -> int:
        return len(self.markup[: self.position].encode("utf-8"))

    def _character_reference(self) -> None:
        match = _CHARACTER_REFERENCE.match(self.markup, self.position)
        decoded = _decode_reference(match) if match else None
        if match and decoded is not None:
            self._emit(decoded)
            self.position = match.end()
        else:
            self._emit("&")
            self.position += 1

    def _start_tag(self) -> None:
        tag_offset = self._byte_offset()
        name_match = _TAG_NAME.match(self.markup, self.position + 1)
        assert name_match is not None  # the pattern matches the empty string
        name = name_match.group().lower()
        if name not in SIMPLE_TAGS and name not in ATTRIBUTE_TAGS:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {tag_offset}')
        self.position = name_match.end()
        attributes = self._attributes(tag_offset)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise EntityParseError('Tag "span" must have class "tg-spoiler"')
        if name == "tg-emoji" and not attributes.get("emoji-id", "").isdigit():
            raise EntityParseError(
                "Custom emoji entity must contain a valid custom emoji identifier"
            )
        self.open_tags.append(_OpenTag(name, self.text_length, attributes))

    def _attributes(self, tag_offset: int) -> dict[str, str]:
        markup = self.markup
        attributes: dict[str, str] = {}
        while True:
            while self.position < len(markup) and markup[self.position].isspace():
                self.position += 1
            if self.position >= len(markup):
                raise EntityParseError(f"Unclosed start tag at byte offset {tag_offset}")
            if markup[self.position] == ">":
                self.position += 1
                return attributes
            name_match = _ATTRIBUTE_NAME.match(markup, self.position)
            if not name_match:
                raise EntityParseError(
                    f"Empty attribute name in the tag at byte offset {tag_offset}"
                )
            self.position = name_match.end()
            value = ""
            if markup.startswith("=", self.position):
                self.position += 1
                value = self._attribute_value(tag_offset)
            attributes[name_match.group().lower()] = value

    def _attribute_value(self, tag_offset: int) -> str:
        markup = self.markup
        if self.position < len(markup) and markup[self.position] in "\"'":
            quote = markup[self.position]
            end = markup.find(quote, self.position + 1)
            if end < 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {tag_offset}")
            raw = markup[self.position + 1 : end]
            self.position = end + 1
        else:
            start = self.position
            while self.position < len(markup) and not (
                markup[self.position].isspace() or markup[self.position] == ">"
            ):
                self.position += 1
            raw = markup[start : self.position]
        return unescape(raw)

    def _end_tag(self) -> None:
        tag_offset = self._byte_offset()
        close = self.markup.find(">", self.position)
        if close < 0:
            raise EntityParseError(f"Unclosed end tag at byte offset {tag_offset}")
        name = self.markup[self.position + 2 : close].strip().lower()
        self.position = close + 1
        if not self.open_tags:
            raise EntityParseError(f"Unexpected end tag at byte offset {tag_offset}")
        opened = self.open_tags.pop()
        if name != opened.name:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {tag_offset}, expected "</{opened.name}>", '
                f'found "</{name}>"'
            )
        self._close(opened)

    def _close(self, tag: _OpenTag) -> None:
        length = self.text_length - tag.offset
        parent = self.open_tags[-1] if self.open_tags else None
        language = tag.attributes.get("class", "")
        # <pre><code class="language-x"> is one pre entity carrying the language.
        in_pre = tag.name == "code" and parent is not None and parent.name == "pre"
        if in_pre and parent is not None and language.startswith("language-"):
            parent.pre_language = language.removeprefix("language-")
            return
        entity = self._entity_for(tag)
        if entity is not None and length > 0:
            entity.update(offset=tag.offset, length=length)
            self.entities.append(entity)

    def _entity_for(self, tag: _OpenTag) -> Entity | None:
        if tag.name in SIMPLE_TAGS:
            entity: Entity = {"type": SIMPLE_TAGS[tag.name]}
            if tag.name == "pre" and tag.pre_language:
                entity["language"] = tag.pre_language
            return entity
        if tag.name == "span":
            return {"type": "spoiler"}
        if tag.name == "blockquote":
            expandable = "expandable" in tag.attributes
            return {"type": "expandable_blockquote" if expandable else "blockquote"}
        if tag.name == "tg-emoji":
            return {"type": "custom_emoji", "custom_emoji_id": tag.attributes["emoji-id"]}
        href = tag.attributes.get("href", "")
        return {"type": "text_link", "url": href} if href else None


def _decode_reference(match: re.Match[str]) -> str | None:
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        return NAMED_CHARACTERS.get(name)
    code_point = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if 0 < code_point <= 0x10FFFF and not 0xD800 <= code_point <= 0xDFFF:
        return chr(code_point)
    return None


def unescape(text: str) -> str:
    """Decodes the character references Telegram knows; any other '&' stays as it is."""
    return _CHARACTER_REFERENCE.sub(lambda match: _decode_reference(match) or match.group(), text)
