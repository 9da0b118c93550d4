"""Copy committed snapshot files into the READMEs that quote them, so README numbers are never
typed by hand. A README quotes a file with

    <!-- snapshot: docs/results/exp54_decoder_size/table.md -->
    (anything: replaced by the file's text)
    <!-- /snapshot -->

Run `.venv/bin/python tools/sync_readmes.py` after `make snapshot`; `--check` exits 1 when a
README differs from its files (tests/test_docs.py runs the same check)."""
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- snapshot: (\S+) -->\n)(.*?)(<!-- /snapshot -->)", re.S)
LINK = re.compile(r"(\]\()([^)\s#:]+)((?:#[^)\s]*)?\))")   # a relative link or image: ](path#anchor)


def readmes():
    """Every README and every page of docs/ (docs/results/ is the snapshot itself)."""
    return sorted([p for p in ROOT.rglob("README.md")
                   if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
                  + list((ROOT / "docs").glob("*.md")))


def relinked(text: str, source: Path, readme_dir: Path) -> str:
    """The source's relative links, rewritten to resolve from the README's folder."""
    def move(m):
        target = os.path.relpath(source.parent / m.group(2), readme_dir)
        return m.group(1) + Path(target).as_posix() + m.group(3)
    return LINK.sub(move, text)


def synced(text: str, readme_dir: Path = ROOT) -> str:
    def fill(m):
        source = ROOT / m.group(2)
        if not source.exists():
            raise SystemExit(f"error: a README quotes {m.group(2)}, which does not exist; run "
                             f"`make snapshot` or fix the path")
        body = relinked(source.read_text().strip(), source, readme_dir)
        return m.group(1) + "\n" + body + "\n\n" + m.group(4)
    return BLOCK.sub(fill, text)


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for readme in readmes():
        text = readme.read_text()
        new = synced(text, readme.parent)
        if new != text:
            stale.append(str(readme.relative_to(ROOT)))
            if not check:
                readme.write_text(new)
    if stale:
        print(("stale: " if check else "updated: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
