"""Every file and directory the docs cite exists: docs/design.md's layout map
(a file named there and not marked "to come"), and every repository path or
relative link in README.md, docs/design.md, docs/emu.md and docs/tour.md."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "docs/design.md", "docs/emu.md", "docs/tour.md"]
TOPS = ("minirt/", "emu/", "tests/", "bench/", "docs/", "images/", ".ci/")
NAME = re.compile(r"[\w.-]+(/[\w.-]+)*/?$")


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def layout_paths():
    """(path, line) for each name in design.md's layout map, folders by indent."""
    text = read("docs/design.md")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    stack = []  # (indent, folder)
    for line in block.splitlines():
        if not line.strip() or "to come" in line:
            continue
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if indent >= 17 or not NAME.match(words[0]):  # a description carried on
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        base = stack[-1][1] if stack else ""
        top_files = indent == 0 and not words[0].endswith("/")  # "pyproject.toml   setup.py (...)   Makefile"
        names = [w for w in words if NAME.match(w) and ("." in w or "/" in w or w == "Makefile")] \
            if top_files else [words[0]]
        for name in names:
            yield base + name, line.strip()
        if words[0].endswith("/"):
            stack.append((indent, base + words[0]))


def test_the_layout_map_names_only_what_exists():
    missing = [f"{path}  ({line})" for path, line in layout_paths()
               if not os.path.exists(os.path.join(REPO, path))]
    assert not missing, "\n".join(missing)


def test_the_docs_cite_only_paths_that_exist():
    missing = []
    for doc in DOCS:
        text = read(doc)
        cited = {p for p in re.findall(r"`([^`\s]+)`", text) if p.startswith(TOPS)}
        cited = {re.split(r"[:#]", p)[0].rstrip(".,") for p in cited if not any(c in p for c in "*<>$")}
        links = {os.path.normpath(os.path.join(os.path.dirname(doc), link.split("#")[0]))
                 for link in re.findall(r"\]\(([^)\s]+)\)", text)
                 if not link.startswith(("http:", "https:", "#", "mailto:"))}
        missing += [f"{doc}: {p}" for p in sorted(cited | links) if not os.path.exists(os.path.join(REPO, p))]
    assert not missing, "\n".join(missing)
