"""A tiny document model rendered to Markdown and to self-contained HTML (images inlined)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mnistlab.core.rundir import read_bytes

# characters with a meaning somewhere in CommonMark or GitHub's Markdown (emphasis, links, code,
# tables, strikethrough, math): a backslash makes each literal
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")  # [ and ] escaped: no link, so ( ) and ! need nothing
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def plain_text(text: str) -> str:
    """Text that came from a file or a name made printable: one line (control characters and line
    breaks become a space), and bytes that were not UTF-8 (surrogate escapes) shown as U+FFFD."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub(" ", text)


def md_escape(text: str, block_start: bool = True) -> str:
    """One line of literal text in Markdown: no HTML (`<`, `>` and `&` become entities), no emphasis,
    link, code span, table cell break or math, and (when it starts a block: a paragraph or a list
    item) no list or heading marker at its start."""
    text = plain_text(str(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if not block_start:  # a heading's or a table cell's text cannot open a list
        return text
    text = re.sub(r"^(\s*\d+)\.", r"\1\\.", text)  # '1. x' would start a list
    return re.sub(r"^(\s*)([-=+#>])", r"\1\\\2", text)  # and so would '- x', '+ x' ('#', '=' a heading)


def plain_text_block(text: str) -> str:
    """plain_text for a block that keeps its line breaks."""
    return "\n".join(plain_text(line) for line in str(text).split("\n"))


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so that the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


@dataclass(frozen=True)
class Link:
    """A link to a section of the same report (its anchor: anchor_of its heading), in a paragraph or a table cell."""

    text: str
    anchor: str

    def __str__(self) -> str:
        return self.text


Part = str | Link  # what a paragraph or a table cell is made of


def anchor_of(heading: str) -> str:
    """A heading's anchor: 'Q6. Is the MLP faster...' -> 'q6'; any other heading, its first words in lower case
    joined by '-' ('How to read this' -> 'how-to-read-this')."""
    m = re.match(r"(Q\d+)\.", heading)
    if m:
        return m.group(1).lower()
    words = re.findall(r"[a-z0-9]+", plain_text(heading).lower())[:4]
    return "-".join(words) or "section"


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h2(self, text: str, anchor: str | None = None) -> None:
        """A section heading; its anchor (for links to it) is `anchor`, else anchor_of(text)."""
        self.blocks.append(("h2", text, anchor or anchor_of(text)))

    def p(self, *parts: Part) -> None:
        """A paragraph: text, with links (Link) to other sections where given."""
        self.blocks.append(("p", parts))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, headers: list[str], rows: Sequence[Sequence[object]], css: str | None = None) -> None:
        """A table; a cell may be a Link. `css`: the HTML table's class (the answer sheet's own layout)."""
        self.blocks.append(("table", headers, [[c if isinstance(c, Link) else str(c) for c in r] for r in rows], css))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", Path(path), caption))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def to_markdown(self, base: Path) -> str:
        """Every text goes through md_escape (run names and file contents are untrusted); image
        links are percent-encoded, so that names with spaces or brackets still render."""
        e = md_escape

        def inline(text: str) -> str:
            return md_escape(text, block_start=False)

        def part(x: Part, first: bool = False) -> str:
            if isinstance(x, Link):
                return f"[{inline(x.text)}](#{quote(x.anchor)})"
            return md_escape(x, block_start=first)

        out = [f"# {inline(self.title)}", ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "h2":
                out += [f'<a id="{html.escape(b[2])}"></a>', "", f"## {inline(b[1])}", ""]
            elif kind == "p":
                out += ["".join(part(x, i == 0) for i, x in enumerate(b[1])), ""]
            elif kind == "ul":
                out += [f"- {e(i)}" for i in b[1]] + [""]
            elif kind == "table":
                out += ["| " + " | ".join(map(inline, b[1])) + " |", "|" + "---|" * len(b[1])]
                out += ["| " + " | ".join(map(part, r)) + " |" for r in b[2]] + [""]
            elif kind == "img":
                rel = b[1].relative_to(base) if b[1].is_relative_to(base) else b[1]
                link = quote(plain_text(rel.as_posix()), safe="/")
                out += [f"![{e(b[2])}]({link})", "", f"*{e(b[2])}*", ""]
            elif kind == "pre":
                text = plain_text_block(b[1])
                fence = _fence(text)
                out += [fence, text, fence, ""]
        return "\n".join(out)

    def to_html(self) -> str:
        def e(text: str) -> str:
            return html.escape(plain_text(str(text)))

        def part(x: Part) -> str:
            if isinstance(x, Link):
                return f'<a href="#{html.escape(quote(x.anchor))}">{e(x.text)}</a>'
            return e(x)

        body = [f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "h2":
                body.append(f'<h2 id="{html.escape(b[2])}">{e(b[1])}</h2>')
            elif kind == "p":
                body.append(f"<p>{''.join(map(part, b[1]))}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{part(c)}</td>" for c in r) + "</tr>" for r in b[2])
                css = f' class="{html.escape(b[3])}"' if b[3] else ""
                body.append(f"<table{css}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "img":
                data = base64.b64encode(read_bytes(b[1], "an image")).decode()
                body.append(
                    f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(b[2])}</figcaption></figure>"
                )
            elif kind == "pre":
                body.append(f"<pre>{html.escape(plain_text_block(b[1]))}</pre>")
        return _PAGE.format(title=e(self.title), body="\n".join(body))


# self-contained: inline style, inline images, and a check a browser test can read
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ border-bottom: 2px solid #444; }} h2 {{ margin-top: 2em; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }} th {{ background: #f0f0f0; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 13px; color: #555; }}
pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }}
h1 {{ font-size: 26px; margin: 0.4em 0 0.3em; }}
table.answers, table.text {{ width: 100%; }}
table.answers td, table.text td {{ text-align: left; vertical-align: top; }}
table.answers th, table.text th {{ text-align: left; }} table.answers {{ margin-top: 0.4em; line-height: 1.3; }}
table.answers td:nth-child(2) {{ width: 21%; color: #444; }} table.answers td:nth-child(4) {{ width: 11%; }}
table.text td:first-child {{ width: 16%; }} table.text td:nth-child(2), table.text td:nth-child(3) {{ width: 25%; }}
</style></head>
<body>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) {{ return !(i.complete && i.naturalWidth > 0); }}).length;
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken-images", broken);
  var sheet = document.querySelector("table.answers");  // where the answer sheet ends: on the first screen?
  if (sheet) document.body.setAttribute("data-answer-sheet-bottom", Math.ceil(sheet.getBoundingClientRect().bottom));
}});
</script>
</body></html>
"""
