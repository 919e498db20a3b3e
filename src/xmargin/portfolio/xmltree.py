"""A small XML tree with line numbers (expat), for error messages that name the line.

DTDs (and with them entity expansion) are refused: these files come from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from xmargin.errors import InputError


@dataclass
class Node:
    tag: str
    line: int
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def one(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def iter(self, tag: str) -> list[Node]:
        out = [self] if self.tag == tag else []
        for c in self.children:
            out.extend(c.iter(tag))
        return out


def parse_tree(text: str | bytes, source: str) -> Node:
    """The document element; namespaces are dropped from tag names (``{ns}PosRpt`` -> ``PosRpt``)."""
    root = Node("#document", 0)
    stack = [root]
    p = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = Node(tag.rsplit(":", 1)[-1] if ":" in tag else tag, p.CurrentLineNumber, dict(attrs))
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        stack[-1].text += data

    def doctype(*_args: object) -> None:
        raise InputError("DTDs are not accepted", source=source, row=p.CurrentLineNumber)

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
    p.StartDoctypeDeclHandler = doctype
    try:
        p.Parse(text, True)
    except expat.ExpatError as exc:
        raise InputError(f"not well-formed XML: {expat.errors.messages[exc.code]}", source=source,
                         row=exc.lineno) from None
    if not root.children:
        raise InputError("no XML document element", source=source, row=1)
    return root.children[0]
