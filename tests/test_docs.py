"""The README stays a user's page (at most 400 lines, the test command CI runs written in it), and every relative
link in the README and docs/*.md reaches an existing file and, with #anchor, an existing heading."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def outside_code(path: Path, inline: bool = False):
    """(line number, line) of a Markdown file outside its code blocks; inline code left out unless `inline`."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line if inline else re.sub(r"`[^`]*`", "", line)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to '-', repeats numbered."""
    found: dict[str, int] = {}
    for _, line in outside_code(path, inline=True):
        heading = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if heading:
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).strip().lower()
            slug = "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")
            found[slug] = found.get(slug, -1) + 1
    return {slug if n == 0 else f"{slug}-{n}" for slug, count in found.items() for n in range(count + 1)}


def test_readme_is_a_page_of_at_most_400_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 400


def test_readme_states_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    (command,) = [line.strip() for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")]
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


def test_relative_links_reach_a_file_and_a_heading():
    broken = []
    for page in PAGES:
        for number, line in outside_code(page):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                if not linked.exists():
                    broken.append(f"{page.name}:{number}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{page.name}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
