"""Put a generated table into README.md between `<!-- NAME:start -->` and `<!-- NAME:end -->`."""
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def write(name: str, table: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    i, j = text.index(start) + len(start), text.index(end)
    README.write_text(text[:i] + "\n" + table + "\n" + text[j:])


def emit(name: str, lines: list[str], to_readme: bool) -> None:
    """Print a table, and put it into README.md too when asked."""
    table = "\n".join(lines)
    print(table)
    if to_readme:
        write(name, table)
