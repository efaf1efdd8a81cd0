"""The README stays short and true: under 250 lines, its links and the docs'
links lead somewhere, the commands it shows exist, and its example result has
exactly the keys of a result the program produces today."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest

from edge_msa.cli import build_parser
from edge_msa.publishing.schemas import SCHEMAS
from tests.conftest import REPO, cli
from tests.media_util import demo_head

README = REPO / "README.md"
DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def key_paths(value: object, prefix: str = "") -> set[str]:
    """Every key of nested dicts, as dotted paths: {"a": {"b": 1}} -> {a, a.b}."""
    if not isinstance(value, dict):
        return set()
    out: set[str] = set()
    for k, v in value.items():
        out |= {prefix + k} | key_paths(v, f"{prefix}{k}.")
    return out


def readme_result() -> dict:
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README holds one example result (one ```json block)"
    return json.loads(blocks[0])


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", md.read_text(), flags=re.M)}


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n < 250, f"README.md has {n} lines: move detail to docs/"


@pytest.mark.parametrize("md", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(md: Path):
    broken = []
    for target in LINK.findall(md.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        missing_anchor = anchor and dest.suffix == ".md" and anchor not in anchors(dest)
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{md.name}: {broken}"


def test_readme_links_every_doc():
    linked = {(REPO / t).resolve() for t in LINK.findall(README.read_text())}
    for doc in ("models", "performance", "reliability", "design", "fleet", "consumers"):
        assert (DOCS / f"{doc}.md").resolve() in linked, f"README does not link docs/{doc}.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _positional_choices(parser: argparse.ArgumentParser) -> set[str]:
    return {
        str(c)
        for a in parser._actions
        if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction)
        for c in a.choices
    }


def test_commands_the_readme_shows_exist():
    """`edge-msa WORD [WORD]` in the README's code: each word a command, a sub-command
    or one of a positional's choices (`train text`, `outbox status|flush`)."""
    lines = [
        m.group(1)
        for m in re.finditer(r"^\s*(?:\.venv/bin/)?edge-msa (.+)$", README.read_text(), re.M)
    ]
    assert len(lines) >= 10
    root = build_parser()
    for line in lines:
        words = []
        for w in shlex.split(line.split("#")[0]):
            if w.startswith(("-", "[", "|")):
                break
            words.append(w)
        parser = root
        for word in words[:2]:
            subs = _subcommands(parser)
            if subs:
                assert word in subs, f"edge-msa {line}: no command {word!r}"
                parser = subs[word]
                continue
            choices = _positional_choices(parser)
            if choices:
                for alt in word.split("|"):
                    assert alt in choices, f"edge-msa {line}: {alt!r} not in {sorted(choices)}"
            else:  # a free positional (a file) is fine; none at all means a wrong word
                free = [a for a in parser._actions if not a.option_strings and not a.choices]
                assert free, f"edge-msa {line}: {parser.prog} takes no {word!r}"
            break


def test_readme_example_is_a_valid_result():
    jsonschema.validate(readme_result(), SCHEMAS["sentiment"])


@pytest.fixture(scope="module")
def real_result(tmp_path_factory) -> dict:
    """What `edge-msa run --output jsonl` prints for the demo's first sentence."""
    tmp = tmp_path_factory.mktemp("readme")
    clip = demo_head(tmp / "first.mp4", 4.8)
    res = cli("run", "--media", str(clip), "--output", "jsonl", "--state-dir", str(tmp / "s"),
              timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    return json.loads(lines[0])


def test_readme_example_has_the_keys_of_a_real_result(real_result):
    """Same keys at every level, and the same modality states as the sentence it
    shows (the demo's first: every modality there)."""
    example = readme_result()
    assert key_paths(example) == key_paths(real_result), (
        "README.md's example result is out of date: take a line of "
        "`edge-msa run --demo --output jsonl`",
        key_paths(example) ^ key_paths(real_result),
    )
    assert example["modalities"] == real_result["modalities"]
    assert example["polarity"] == real_result["polarity"]


@pytest.mark.parametrize("md", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_files_the_docs_name_exist(md: Path):
    """Repository paths in the text (`configs/fusion.toml`, `scripts/soak.sh`, ...)."""
    top = r"configs|scripts|examples|docs|deploy|edge_msa|models|tests|calibration"
    named = set(re.findall(rf"(?<![\w./~-])((?:{top})/[\w./*-]*[\w/*])", md.read_text()))
    missing = sorted(p for p in named if "*" not in p and not (REPO / p).exists())
    assert not missing, f"{md.name}: {missing}"
