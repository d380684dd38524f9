"""Each family's requirements.txt: a subset of pyproject.toml's dependencies that covers what the family imports."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["Lenet-300-100", "CNN", "VGG", "BERT"]
TOOLKIT_LINE = "-e ."  # pip resolves it against the working directory: the files are run from the repository root
# Import names whose distribution is named otherwise, for when the package is not installed here.
DISTRIBUTION_OF = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml", "cv2": "opencv-python"}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def requirement_lines(family: str) -> list[str]:
    lines = []
    for raw in (REPO / family / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def listed(family: str) -> dict[str, Requirement]:
    requirements = {}
    for line in requirement_lines(family):
        if line == TOOLKIT_LINE:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            pytest.fail(f"{family}/requirements.txt: {line!r} is neither {TOOLKIT_LINE!r} nor a requirement")
        requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def module_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements run when the module is imported (not those inside functions or classes)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            todo += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]
    return found


def imported_names(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "lth":
                names |= {f"lth.{alias.name}" for alias in node.names}
    return names


def lth_file(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level third-party modules -> the files importing them: every import in the folder's own .py files
    (lazy ones too), and the module-level imports of the lth modules they reach."""
    local = {p.stem for p in folder.glob("*.py")}
    found: dict[str, set[str]] = {}
    todo = [(path, ast.walk(ast.parse(path.read_text()))) for path in sorted(folder.glob("*.py"))]
    seen = set()
    while todo:
        path, nodes = todo.pop()
        for name in imported_names(nodes):
            top = name.partition(".")[0]
            if top == "lth":
                source = lth_file(name)
                if source and source not in seen:
                    seen.add(source)
                    todo.append((source, module_level_imports(ast.parse(source.read_text()))))
            elif (
                top not in sys.stdlib_module_names
                and top != "__future__"
                and not (path.parent == folder and top in local)
            ):
                found.setdefault(top, set()).add(
                    str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
                )
    return found


def distributions_of(module: str) -> set[str]:
    installed = importlib.metadata.packages_distributions().get(module, [])
    names = {canonicalize_name(d) for d in installed}
    if module in DISTRIBUTION_OF:
        names.add(canonicalize_name(DISTRIBUTION_OF[module]))
    return names


@pytest.mark.parametrize("family", FAMILIES)
def test_requirements_install_the_toolkit_and_only_declared_packages(family):
    lines = requirement_lines(family)
    assert lines and lines[0] == TOOLKIT_LINE, f"{family}/requirements.txt should start by installing the toolkit"
    pyproject = declared()
    for name, requirement in listed(family).items():
        assert name in pyproject, (
            f"{family}/requirements.txt lists {requirement}, which pyproject.toml does not declare"
        )
        want = pyproject[name]
        assert (requirement.specifier, requirement.extras, requirement.marker) == (
            want.specifier,
            want.extras,
            want.marker,
        ), f"{family}/requirements.txt has {requirement}; pyproject.toml declares {want}"


def unlisted(folder: Path, requirements: dict[str, Requirement]) -> list[str]:
    missing = []
    for module, files in sorted(third_party_imports(folder).items()):
        distributions = distributions_of(module)
        if not distributions & requirements.keys():
            label = "/".join(sorted(distributions)) or f"the distribution providing {module!r}"
            missing.append(f"{label} (imported as {module} in {', '.join(sorted(files))})")
    return missing


@pytest.mark.parametrize("family", FAMILIES)
def test_requirements_cover_every_third_party_import(family):
    missing = unlisted(REPO / family, listed(family))
    assert not missing, f"{family}/requirements.txt (and pyproject.toml) should list: " + "; ".join(missing)


def test_a_new_import_in_a_family_is_caught(tmp_path):
    """Function-level imports count, import names map to distributions, lth's module-level imports are followed."""
    (tmp_path / "helper.py").write_text("import numpy\n")
    (tmp_path / "main.py").write_text(
        "import helper\nfrom lth.plotting import load_rounds\n\ndef f():\n    from sklearn import svm\n    import zzz_not_a_package\n"
    )
    requirements = {name: Requirement(name) for name in ("numpy", "matplotlib", "torch")}
    missing = unlisted(tmp_path, requirements)
    assert [m.split(" (")[0] for m in missing] == [
        "pandas",
        "scikit-learn",
        "the distribution providing 'zzz_not_a_package'",
    ]
    assert "lth/plotting.py" in missing[0] and "main.py" in missing[1]
