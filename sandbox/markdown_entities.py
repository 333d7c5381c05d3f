"""Telegram's MarkdownV2 and legacy Markdown parse modes, parsed leniently.

Covers the everyday syntax (bold, italic, underline, strikethrough, spoiler, inline code, pre
blocks, inline links) and the mistake bots make most: an unescaped reserved character in
MarkdownV2. Offsets and lengths are in UTF-16 code units.
"""

from __future__ import annotations

from sandbox.html_entities import Entity, EntityParseError, utf16_length

V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
V2_MARKERS = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}
LEGACY_MARKERS = {"*": "bold", "_": "italic"}


class _MarkdownParser:
    def __init__(self, markup: str, *, v2: bool) -> None:
        self.markup = markup
        self.v2 = v2
        self.markers = V2_MARKERS if v2 else LEGACY_MARKERS
        self.position = 0
        self.text: list[str] = []
        self.text_length = 0
        # (marker, UTF-16 offset where its entity starts, byte offset of the marker)
        self.open: list[tuple[str, int, int]] = []
        self.entities: list[Entity] = []

    def parse(self) -> tuple[str, list[Entity]]:
        markup = self.markup
        while self.position < len(markup):
            char = markup[self.position]
            if (
                char == "\\"
                and self.position + 1 < len(markup)
                and self._escapable(markup[self.position + 1])
            ):
                self._emit(markup[self.position + 1])
                self.position += 2
            elif markup.startswith("```", self.position):
                self._code("```", "pre")
            elif char == "`":
                self._code("`", "code")
            elif char == "[":
                self._link_start()
            elif char == "]" and any(marker == "[" for marker, _, _ in self.open):
                self._link_end()
            elif (marker := self._marker_at()) is not None:
                self._toggle(marker)
            elif self.v2 and char == ">" and self._at_line_start():
                self.position += 1  # a blockquote line; kept as plain text
            elif self.v2 and char in V2_RESERVED:
                raise EntityParseError(
                    f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
                )
            else:
                self._emit(char)
                self.position += 1
        if self.open:
            _, _, byte_offset = self.open[-1]
            raise EntityParseError(self._unclosed_message(byte_offset))
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self.text), self.entities

    def _at_line_start(self) -> bool:
        return self.position == 0 or self.markup[self.position - 1] == "\n"

    def _escapable(self, char: str) -> bool:
        return 0 < ord(char) < 127 if self.v2 else char in "_*`["

    def _emit(self, chunk: str) -> None:
        self.text.append(chunk)
        self.text_length += utf16_length(chunk)

    def _byte_offset(self) -> int:
        return len(self.markup[: self.position].encode("utf-8"))

    def _unclosed_message(self, byte_offset: int) -> str:
        return f"Can't find end of the entity starting at byte offset {byte_offset}"

    def _marker_at(self) -> str | None:
        for marker in sorted(self.markers, key=len, reverse=True):
            if self.markup.startswith(marker, self.position):
                return marker
        return None

    def _toggle(self, marker: str) -> None:
        if self.open and self.open[-1][0] == marker:
            _, offset, _ = self.open.pop()
            self._add_entity({"type": self.markers[marker]}, offset)
        else:
            self.open.append((marker, self.text_length, self._byte_offset()))
        self.position += len(marker)

    def _code(self, fence: str, entity_type: str) -> None:
        start_byte = self._byte_offset()
        body_start = self.position + len(fence)
        end = self.markup.find(fence, body_start)
        while end > 0 and self.v2 and self.markup[end - 1] == "\\":
            end = self.markup.find(fence, end + 1)
        if end < 0:
            raise EntityParseError(self._unclosed_message(start_byte))
        body = self.markup[body_start:end]
        entity: Entity = {"type": entity_type}
        if entity_type == "pre" and "\n" in body:
            first_line, rest = body.split("\n", 1)
            if first_line and " " not in first_line:
                entity["language"] = first_line
                body = rest
        if self.v2:
            body = body.replace("\\`", "`").replace("\\\\", "\\")
        offset = self.text_length
        self._emit(body)
        self._add_entity(entity, offset)
        self.position = end + len(fence)

    def _link_start(self) -> None:
        self.open.append(("[", self.text_length, self._byte_offset()))
        self.position += 1

    def _link_end(self) -> None:
        if self.open[-1][0] != "[":
            _, _, byte_offset = self.open[-1]
            raise EntityParseError(self._unclosed_message(byte_offset))
        _, offset, byte_offset = self.open.pop()
        self.position += 1
        if not self.markup.startswith("(", self.position):
            if self.v2:
                raise EntityParseError(self._unclosed_message(byte_offset))
            return
        close = self.markup.find(")", self.position)
        if close < 0:
            raise EntityParseError(self._unclosed_message(byte_offset))
        url = self.markup[self.position + 1 : close].replace("\\)", ")").replace("\\\\", "\\")
        self.position = close + 1
        self._add_entity({"type": "text_link", "url": url}, offset)

    def _add_entity(self, entity: Entity, offset: int) -> None:
        length = self.text_length - offset
        if length > 0:
            entity.update(offset=offset, length=length)
            self.entities.append(entity)


def parse_markdown_v2(markup: str) -> tuple[str, list[Entity]]:
    return _MarkdownParser(markup, v2=True).parse()


def parse_markdown(markup: str) -> tuple[str, list[Entity]]:
    return _MarkdownParser(markup, v2=False).parse()
