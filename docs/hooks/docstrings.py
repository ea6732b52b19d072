"""A Griffe extension (mkdocs.yml: mkdocstrings' ``extensions``): the package's
docstrings, written for ``help()`` and an editor, made into Markdown for the site.

- An array shape such as ``(N, C*H*W)`` becomes code, so Markdown keeps its asterisks
  (``*H*`` would otherwise turn into italics).
- Sphinx roles (``:func:`nms```, ``:class:```, ``:mod:``, ``:meth:``) become code.
- A mention of ``docs/layers/conv.md`` (the derivations) becomes a link to that page.

Only the rendered text changes; the docstrings in the package stay as they are.
"""

from __future__ import annotations

import re

import griffe

# "(N, C*H*W)", "(R, 4 (K+1))", "(3, H, W)": a parenthesised tuple whose first item is a
# shape letter or a number, not already inside backticks.
SHAPE = re.compile(r"(?<![`\w])\((?:[A-Z]\w*|\d+)(?:\s*[*+\-/]\s*\w+)*"
                   r"(?:,\s*[^()\n`,]+(?:\([^()\n`]*\))?)+,?\)")
ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`~?([^`]+)`")
DERIVATION = re.compile(r"(?<![\[(`/])docs/layers/(\w+)\.md")
WEIGHTS = re.compile(r"(?<![\[(`/])minircnn/weights/README\.md")


def markdown(text: str) -> str:
    """The Markdown the site renders for one docstring."""
    text = ROLE.sub(r"`\1`", text)
    text = DERIVATION.sub(r"[docs/layers/\1.md](../layers/\1.md)", text)
    text = WEIGHTS.sub(r"[minircnn/weights/README.md](../weights.md)", text)
    parts = re.split(r"(``?[^`]*``?)", text)          # leave code spans alone
    return "".join(p if p.startswith("`") else SHAPE.sub(r"`\g<0>`", p) for p in parts)


class SiteDocstrings(griffe.Extension):
    """Rewrites every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
