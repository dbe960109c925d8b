"""Every ```python and ```console block of the README runs as written.

Each block runs on its own, in an empty temporary directory: a python block
in a fresh namespace; a console block's commands (its lines starting with
``$ ``, ``fastmlp`` and ``python`` run by this Python) one after another,
each of which must exit with status 0 (the other lines, sample output, are
not compared). A block whose first line is a marker such as ``# needs: torch``
or ``# needs: matplotlib, PIL  (pip install "fastmlp[plot]")`` is skipped
when one of the named modules cannot be imported (the words after ``needs:``
up to a parenthesis, comma separated, are import names).

The README is the one beside ``tests/`` (a checkout, or CI's work directory,
where .ci/run copies it); without one, the installed package's long
description (its README, in the wheel's metadata).
"""
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_NEEDS = re.compile(r"^#\s*needs:\s*(?P<names>[^(]*)")


def _readme():
    """(text, where) of the README to test."""
    beside = Path(__file__).resolve().parent.parent / "README.md"
    if beside.is_file():
        return beside.read_text(encoding="utf-8"), str(beside)
    from importlib.metadata import PackageNotFoundError, metadata
    try:
        meta = metadata("fastmlp")
        text = meta.get_payload() or meta.get("Description")
    except PackageNotFoundError:
        text = None
    if not text:
        pytest.fail(f"no README to test: neither {beside} nor an installed fastmlp's "
                    "description (copy README.md beside tests/)")
    return text, "fastmlp's metadata (README)"


def blocks(text, lang="python"):
    """[(first line number, code)] of every ```lang block, dedented to its fence."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        i += 1
        if not m or not m["lang"]:
            continue
        indent, body, start = m["indent"], [], i + 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1                                          # the closing fence
        if m["lang"] == lang:
            blocks.append((start, "\n".join(body) + "\n"))
    return blocks


def needs(code):
    """The import names a block's ``# needs:`` marker lists (first line only)."""
    first = code.lstrip("\n").split("\n", 1)[0]
    m = _NEEDS.match(first.strip())
    return [] if m is None else [n.strip() for n in m["names"].split(",") if n.strip()]


TEXT, WHERE = _readme()
BLOCKS = blocks(TEXT)
CONSOLE = blocks(TEXT, "console")


def commands(code):
    """The argument lists of a console block's ``$ `` lines, for this Python."""
    runs = {"fastmlp": [sys.executable, "-m", "fastmlp"], "python": [sys.executable]}
    argvs = [shlex.split(line[2:]) for line in code.splitlines() if line.startswith("$ ")]
    return [runs.get(argv[0], argv[:1]) + argv[1:] for argv in argvs]


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 5, f"found {len(BLOCKS)} ```python blocks in {WHERE}"


def test_block_extraction_and_markers():
    text = "x\n```python\n# needs: torch, onnx  (pip install x)\na = 1\n```\n" \
           "  ```python\n  b = 2\n  ```\n```bash\nls\n```\n"
    found = blocks(text)
    assert found == [(3, "# needs: torch, onnx  (pip install x)\na = 1\n"), (7, "b = 2\n")]
    assert needs(found[0][1]) == ["torch", "onnx"] and needs(found[1][1]) == []
    assert blocks(text, "bash") == [(10, "ls\n")]
    assert commands("$ fastmlp demo 'x y'\nout\n$ ls") == [
        [sys.executable, "-m", "fastmlp", "demo", "x y"], ["ls"]]


def _skip_without_needs(line, code):
    missing = [name for name in needs(code) if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"README line {line} needs {', '.join(missing)}")


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path, monkeypatch):
    _skip_without_needs(line, code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(compile(code, f"README.md, block at line {line}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("line, code", CONSOLE, ids=[f"line{line}" for line, _ in CONSOLE])
def test_readme_console_block_runs(line, code, tmp_path):
    _skip_without_needs(line, code)
    for argv in commands(code):
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (f"README line {line}: {shlex.join(argv)} exited with "
                                      f"{done.returncode}\n{done.stdout}\n{done.stderr}")
