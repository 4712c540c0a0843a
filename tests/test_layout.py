"""The package's shape: imports run one way (lower layers never import upper ones)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "unseg"
# Each layer and the layers above it that it must never import (at module level or inside a function).
FORBIDDEN = {
    "budget": ("data", "models", "protection", "training", "evaluation", "baselines", "cli", "serve"),
    "devices": ("data", "models", "protection", "training", "evaluation", "baselines", "cli", "serve"),
    "data": ("protection", "training", "evaluation", "baselines", "cli", "serve"),
    "models": ("protection", "training", "evaluation", "baselines", "cli", "serve"),
    "protection": ("training", "evaluation", "cli", "serve"),
}


def imported_modules(source: str, package: str) -> set[str]:
    """Every ``unseg.*`` module that ``source`` (a module of ``package``) imports, anywhere in it,
    relative imports resolved."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
    return {name for name in found if name == "unseg" or name.startswith("unseg.")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_lower_layers_never_import_upper_ones():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0].removesuffix(".py")
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
        for module in imported_modules(path.read_text(encoding="utf-8"), package):
            if layer_of(module) in FORBIDDEN.get(layer, ()):
                offences.append(f"{relative} imports {module}")
    assert not offences, offences


def test_the_import_check_sees_function_level_and_relative_imports():
    source = "import os\ndef f():\n    from unseg.protection import Protector\n    from ..training import config\n"
    assert imported_modules(source, "unseg.data") == {"unseg.protection", "unseg.training"}
    assert layer_of("unseg.protection.protector") == "protection" and layer_of("unseg") == ""


def test_no_file_cites_a_document_that_is_not_in_the_repository():
    """The paper is cited as arXiv:2410.09909; PAPER.md lived beside the repository, not in it."""
    repo = PACKAGE.parents[1]
    assert not (repo / "PAPER.md").exists()
    citing = [str(path.relative_to(repo)) for folder in ("src", "benchmarks", "tests") for path in (repo / folder).rglob("*")
              if path.suffix in (".py", ".toml", ".md") and path != Path(__file__)
              and "PAPER.md" in path.read_text(encoding="utf-8")]
    citing += [name for name in ("README.md",) if "PAPER.md" in (repo / name).read_text(encoding="utf-8")]
    assert not citing, citing


def _readme_layout() -> list[str]:
    """The paths listed in the README's "Layout" code block (first word of each line)."""
    text = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def test_readme_layout_matches_the_tree():
    repo = PACKAGE.parents[1]
    listed = _readme_layout()
    assert all((repo / path).exists() for path in listed), [path for path in listed if not (repo / path).exists()]
    packages = {path.relative_to(repo).as_posix() for path in PACKAGE.rglob("*")
                if path.is_dir() and path.name != "__pycache__" and not path.name.endswith(".egg-info")}
    top = {path.name for path in repo.iterdir() if path.is_dir() and not path.name.startswith(".")
           and path.name != "src" and any(path.rglob("*.*")) and _tracked(repo, path)}
    modules = {path.relative_to(repo).as_posix() for path in PACKAGE.glob("*.py") if not path.name.startswith("__")}
    missing = sorted((packages | top | modules) - set(listed))
    assert not missing, f"README layout lacks {missing}"


def _tracked(repo: Path, folder: Path) -> bool:
    """Whether git tracks anything under ``folder`` (so a local .venv or runs/ is not the tree)."""
    import subprocess

    result = subprocess.run(["git", "ls-files", "--", folder.name], cwd=repo, capture_output=True, text=True)
    return result.returncode != 0 or bool(result.stdout.strip())
