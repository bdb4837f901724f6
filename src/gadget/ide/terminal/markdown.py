"""Model output made safe for a terminal: inert control characters, and Markdown rendered in place.

What the model writes is untrusted, as in the web IDE. Here that means:

- no terminal control: escape sequences and other control characters (which
  could move the cursor, clear the screen, retitle the window or forge a
  hyperlink) are shown as visible symbols (`inert`);
- HTML is shown as the text it is, where it is: inline tags stay in their
  sentence and HTML blocks become code blocks; nothing is interpreted;
- an image is a link `[image: alt] (url)` in its place (rich would move it in
  front of its paragraph), and a link shows where it goes: `text (url)`, or the
  URL alone when that is its text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from markdown_it.token import Token
from rich.markdown import Markdown

# C0 controls but tab and newline, DEL, and the C1 controls (ESC's 8-bit forms).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def _symbol(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␍ for CR…
    return "␡" if code == 0x7F else "�"


def inert(text: str) -> str:
    """`text` with every control character but tab and newline shown as a symbol."""
    return _CONTROL.sub(_symbol, text)


class SafeMarkdown(Markdown):
    """rich's Markdown with HTML, images and links made inert and kept in place."""

    def __init__(self, markup: str) -> None:
        super().__init__(inert(markup), code_theme="ansi_dark", hyperlinks=False)
        self.parsed = list(_blocks(self.parsed))


def _blocks(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        if token.type == "html_block":
            yield Token("fence", "code", 0, content=token.content, info="html", block=True)
            continue
        if token.children is not None:
            token.children = list(_inlines(token.children))
        yield token


def _inlines(tokens: list[Token]) -> Iterator[Token]:
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.type == "html_inline":
            yield Token("text", "", 0, content=token.content)
        elif token.type == "image":
            src = str(token.attrs.get("src", ""))
            yield Token("link_open", "a", 1, attrs={"href": src})
            yield Token("text", "", 0, content=f"[image: {token.content or src}]")
            yield Token("link_close", "a", -1)
        elif token.type == "link_open":
            end = _link_end(tokens, index)
            inner = list(_inlines(tokens[index:end]))
            text = "".join(t.content for t in inner if t.type in {"text", "code_inline"})
            href = str(token.attrs.get("href", ""))
            bare = href in {text, f"mailto:{text}"}
            yield from inner if bare else [token, *inner, tokens[end]]
            index = end + 1
        else:
            yield token


def _link_end(tokens: list[Token], start: int) -> int:
    """The index of the `link_close` matching the `link_open` just before `start`."""
    depth = 1
    for index in range(start, len(tokens)):
        depth += {"link_open": 1, "link_close": -1}.get(tokens[index].type, 0)
        if depth == 0:
            return index
    return len(tokens) - 1
