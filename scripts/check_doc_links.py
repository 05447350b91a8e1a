#!/usr/bin/env python3
"""Checks that every relative link in README.md and docs/**/*.md resolves.

A link is `[text](target)` or `![alt](target)` outside code; `target` may
carry a `#fragment`, which must name a heading of the target Markdown file
(GitHub's anchors: lowercase, punctuation dropped, spaces as hyphens).
Links to http(s) and mailto are not checked, and a link may not leave the
repository. Prints each broken link and exits 1 if there is one.

    python3 scripts/check_doc_links.py
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


def prose_lines(text, keep_code=False):
    """The lines outside fenced code blocks, with inline code removed
    (kept, without its backticks, if `keep_code`)."""
    fenced = False
    for n, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line.replace("`", "") if keep_code else INLINE_CODE.sub("", line)


def anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    seen = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8"), keep_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def main():
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
    broken = 0
    checked = 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        for n, line in prose_lines(text):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^(https?|mailto):", target):
                    continue
                checked += 1
                path_part, _, frag = target.partition("#")
                dest = (f.parent / path_part).resolve() if path_part else f
                where = f"{f.relative_to(ROOT)}:{n}: {target}"
                if ROOT not in dest.parents and dest != ROOT:
                    print(f"{where}: outside the repository")
                    broken += 1
                elif not dest.exists():
                    print(f"{where}: no such file")
                    broken += 1
                elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                    print(f"{where}: no heading #{frag} in {dest.relative_to(ROOT)}")
                    broken += 1
    print(f"{checked} relative links in {len(files)} files, {broken} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
