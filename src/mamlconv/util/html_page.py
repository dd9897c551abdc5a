"""A Markdown report as one self-contained HTML page, for people who would rather look than read.

:func:`html_report` renders Markdown (the subset the audit report writes,
:mod:`mamlconv.paper_checks.report`: headings,
paragraphs, bullet lists, tables, block quotes, images, inline code, bold, italics, links, and
the raw ``<details>``/``<pre>``/``<a id>`` blocks) to HTML, with every figure embedded as a
``data:`` URI, so the file needs nothing beside it: it survives a move of its folder, or being
mailed alone. A figure that cannot be read is named in the text instead of a broken image.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 78rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; vertical-align: top; text-align: left; }
th { background: #f2f2f2; }
code { background: #f5f5f5; padding: 0 0.2rem; }
pre { background: #f8f8f8; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
img { max-width: 100%; border: 1px solid #ddd; }
blockquote { border-left: 4px solid #ccc; margin: 0.5rem 0; padding: 0.1rem 0.8rem; color: #444; }
"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def data_uri(path: Path) -> str | None:
    """The file as a ``data:`` URI, or None when it cannot be read."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _inline(text: str, folder: Path) -> str:
    """One line of Markdown to HTML: images (embedded), links, code, bold, italics."""
    out, pos = [], 0
    tokens = re.compile(r"!\[[^\]]*\]\([^)\s]+\)|\[[^\]]+\]\([^)\s]+\)|`[^`]+`")
    for m in tokens.finditer(text):
        out.append(_emphasis(html.escape(text[pos : m.start()], quote=False)))
        token = m.group(0)
        if token.startswith("!["):
            alt, src = _IMAGE.fullmatch(token).groups()  # type: ignore[union-attr]
            uri = data_uri(folder / src)
            alt_html = html.escape(alt)
            out.append(
                f'<img src="{uri}" alt="{alt_html}">'
                if uri
                else f"<em>[figure missing: {html.escape(src)}]</em>"
            )
        elif token.startswith("["):
            label, href = _LINK.fullmatch(token).groups()  # type: ignore[union-attr]
            out.append(f'<a href="{html.escape(href)}">{_emphasis(html.escape(label))}</a>')
        else:
            out.append(f"<code>{html.escape(token[1:-1], quote=False)}</code>")
        pos = m.end()
    out.append(_emphasis(html.escape(text[pos:], quote=False)))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)


def _cells(line: str) -> list[str]:
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(md: str, folder: Path) -> str:
    """The body HTML of the report's Markdown; images resolved against ``folder``."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    raw_block = False
    while i < len(lines):
        line = lines[i]
        if raw_block or line.startswith(("<details", "<pre", "</details", "<a id=", "<ul", "<li")):
            out.append(line)  # the report's own HTML, already escaped where it holds text
            raw_block = ("<pre>" in line and "</pre>" not in line) or (
                raw_block and "</pre>" not in line
            )
            i += 1
            continue
        if not line.strip():
            i += 1
            continue
        if m := re.match(r"(#{1,6}) (.*)", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2), folder)}</h{n}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            rule = re.compile(r"\|(\s*:?-+:?\s*\|)+\s*$")  # the |---|---| line under the head
            head, body = _cells(rows[0]), [r for r in rows[1:] if not rule.match(r)]
            out.append("<table><thead><tr>")
            out += [f"<th>{_inline(c, folder)}</th>" for c in head]
            out.append("</tr></thead><tbody>")
            for r in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c, folder)}</td>" for c in _cells(r)))
                out.append("</tr>")
            out.append("</tbody></table>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:], folder)}</li>")
                i += 1
            out.append("</ul>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{_inline(line[2:], folder)}</blockquote>")
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"[#|<>-]", lines[i][:1]):
                para.append(lines[i])
                i += 1
            if not para:  # a line no rule above takes: keep it as a paragraph of its own
                para, i = [line], i + 1
            out.append(f"<p>{_inline(' '.join(para), folder)}</p>")
    return "\n".join(out)


def html_report(md: str, folder: Path, *, title: str = "Claims audit") -> str:
    """A standalone HTML page of the report's Markdown, figures embedded."""
    body = markdown_to_html(md, Path(folder))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f"{body}\n</body></html>\n"
    )
