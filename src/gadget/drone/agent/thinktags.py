"""Split `<think>…</think>` reasoning out of streamed content, tags cut across chunks."""

from __future__ import annotations

__all__ = ["ThinkSplitter"]

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Feed content deltas; get back `(is_thinking, text)` segments in order.

    A tail that could be the start of a tag is held back until the next delta
    (or :meth:`flush`) shows whether it is one.
    """

    def __init__(self) -> None:
        """Start outside a think block."""
        self.thinking = False
        self._held = ""

    def feed(self, delta: str) -> list[tuple[bool, str]]:
        """Segments of `delta` that are certain now."""
        text, self._held = self._held + delta, ""
        out: list[tuple[bool, str]] = []
        while text:
            tag = CLOSE if self.thinking else OPEN
            at = text.find(tag)
            if at >= 0:
                if at:
                    out.append((self.thinking, text[:at]))
                self.thinking = not self.thinking
                text = text[at + len(tag) :]
                continue
            keep = _partial_tag_suffix(text, tag)
            if len(text) > keep:
                out.append((self.thinking, text[: len(text) - keep]))
            self._held = text[len(text) - keep :]
            break
        return out

    def flush(self) -> list[tuple[bool, str]]:
        """Whatever is still held back, at the end of the stream."""
        held, self._held = self._held, ""
        return [(self.thinking, held)] if held else []


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
