"""The README's first command, run as a new user would: a fresh virtual environment and a
clean copy of the repository. (The second command is what .ci/run runs.) And the README's
shape: every CLI option in its tables, short enough to read, its links alive."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300  # the history and the measurements live in docs/ and benchmarks/


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-commands -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its marked command block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_first_command_in_a_fresh_venv(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    repo = tmp_path / "repo"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = readme_commands()[0]
    done = subprocess.run(
        ["bash", "-c", f". {venv}/bin/activate && {command}"], cwd=repo,
        capture_output=True, text=True, timeout=840,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with av.open(str(repo / "demo.mp4")) as out, \
            av.open(str(repo / "stream_denoise" / "data" / "sample.mp4")) as sample:
        n_out = sum(1 for _ in out.decode(video=0))
        n_in = sum(1 for _ in sample.decode(video=0))
    assert n_out == n_in > 0


def test_readme_documents_every_cli_option_and_no_other():
    from stream_denoise.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    # The option tables: rows that start with a backticked option.
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `-")]
    documented = {opt for row in rows for opt in re.findall(r"(--[a-z][a-z0-9-]+)", row.split("|")[1])}
    existing = {opt for a in parser._actions for opt in a.option_strings if opt.startswith("--")}
    for command, p in sub.choices.items():
        assert f"stream-denoise {command}" in (ROOT / "README.md").read_text(), command
        existing |= {opt for a in p._actions for opt in a.option_strings if opt.startswith("--")}
    existing.discard("--help")
    assert existing - documented == set(), "options missing from the README"
    assert documented - existing == set(), "README documents options that do not exist"


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): training history "
        "goes to docs/models.md, measurements to benchmarks/README.md, design to "
        "docs/architecture.md")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors, seen = set(), {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = not in_code and re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not in code blocks
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # no http:, mailto:


@pytest.mark.parametrize("name", ["README.md", "docs/models.md", "docs/architecture.md",
                                  "benchmarks/README.md"])
def test_relative_links_resolve(name):
    """Every relative link in the README, and in the docs it links to, names a file or
    folder that exists (and a heading that exists, where it names one)."""
    source = ROOT / name
    links = _relative_links(source)
    if name == "README.md":
        assert {"docs/models.md", "docs/architecture.md", "benchmarks/README.md"} <= {
            link.split("#")[0] for link in links}, "README.md lost a link to the docs"
    for link in links:
        file, _, anchor = link.partition("#")
        target = (source.parent / file).resolve() if file else source
        assert target.exists(), f"{name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target.read_text()), f"{name}: no heading for {link}"
