"""The README stays short and its links, like the docs' links, lead somewhere; its set-up commands are CI's.

`mkdocs build --strict` (in .ci/run) checks the links between docs pages, their anchors and the API reference;
these checks need no docs extra and cover the README too, which the site does not hold.
"""

import glob
import os
import re
import unicodedata

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES, MAX_COLUMNS = 250, 120
SET_UP_HEADING = "## Set-up: two commands"

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def path(*parts):
    return os.path.join(REPO, *parts)


def read(file):
    with open(file, encoding="utf-8") as handle:
        return handle.read()


def markdown_files():
    """README.md and every page under docs/."""
    return [path("README.md")] + sorted(glob.glob(path("docs", "**", "*.md"), recursive=True))


def links(text):
    """The link targets of a markdown text, outside code blocks and code spans."""
    return LINK.findall(INLINE_CODE.sub("", FENCE.sub("", text)))


def slug(heading):
    """A heading's anchor as Python-Markdown's toc (MkDocs) and GitHub write it, for the headings used here."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def anchors(file):
    return {slug(line.lstrip("#").strip()) for line in FENCE.sub("", read(file)).splitlines() if line.startswith("#")}


def set_up_blocks(readme):
    """The bash blocks of the README's set-up section."""
    section = readme[readme.index(SET_UP_HEADING) :]
    section = section[: section.index("\n## ", len(SET_UP_HEADING))]
    return re.findall(r"^```bash\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def test_the_readme_is_short_and_narrow():
    readme = read(path("README.md"))
    lines = readme.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    # The two set-up commands are kept verbatim, one line each (CI and a checker run them as they stand).
    commands = {line for block in set_up_blocks(readme) for line in block.splitlines()}
    wide = [(number, len(line)) for number, line in enumerate(lines, 1) if len(line) > MAX_COLUMNS]
    wide = [(number, width) for number, width in wide if lines[number - 1] not in commands]
    assert not wide, f"README.md lines over {MAX_COLUMNS} columns (line, width): {wide}"


def test_every_relative_link_points_at_a_file_that_exists():
    broken = []
    for file in markdown_files():
        for target in links(read(file)):
            if SCHEME.match(target) or target.startswith("#"):
                continue
            target_path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(file), target_path))
            if not os.path.exists(resolved):
                broken.append((os.path.relpath(file, REPO), target))
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                broken.append((os.path.relpath(file, REPO), target))
    assert not broken, f"links to no file or heading (page, link): {broken}"


def test_docs_pages_link_only_inside_docs():
    """The site holds docs/ only: a page names other files (results pages, sources) as code paths."""
    outside = []
    for file in markdown_files()[1:]:
        for target in links(read(file)):
            if SCHEME.match(target) or target.startswith("#"):
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(file), target.partition("#")[0]))
            if os.path.commonpath([resolved, path("docs")]) != path("docs"):
                outside.append((os.path.relpath(file, REPO), target))
    assert not outside, f"links out of docs/ (page, link): {outside}"


def test_every_docs_page_is_in_the_site_navigation():
    def pages(entries):
        for entry in entries:
            value = entry if isinstance(entry, str) else next(iter(entry.values()))
            yield from ([value] if isinstance(value, str) else pages(value))

    nav = list(pages(yaml.safe_load(read(path("mkdocs.yml")))["nav"]))
    on_disk = [os.path.relpath(file, path("docs")) for file in markdown_files()[1:]]
    assert sorted(nav) == sorted(on_disk), "mkdocs.yml's nav and the pages under docs/ differ"


def test_the_readmes_set_up_commands_are_the_ones_ci_runs():
    blocks = set_up_blocks(read(path("README.md")))
    assert len(blocks) == 2 and all(block.count("\n") == 1 for block in blocks), "two one-line bash blocks"
    main_job, tests = (block.strip() for block in blocks)
    ci_lines = read(path(".ci", "run")).splitlines()
    assert tests in ci_lines, "the README's test command must be the line .ci/run runs, verbatim"
    environment = tests[: tests.index(" && .venv/bin/pytest")].replace('".[test]"', ".")
    assert main_job.startswith(environment + " && .venv/bin/python run_recbole_duet.py --model=DUET"), (
        "the README's main job must install as the test command does, then train DUET"
    )


def test_the_readme_results_map_is_what_the_committed_results_give(monkeypatch):
    """The map is rewritten by ``python -m benchmarks.results_map``; a new result without a rerun fails here."""
    from benchmarks.results_map import END, START, map_rows, markdown, replace_block

    monkeypatch.chdir(REPO)
    readme = read(path("README.md"))
    assert readme.count(START) == readme.count(END) == 1
    assert replace_block(readme, markdown(map_rows())) == readme, "run: python -m benchmarks.results_map"
