"""The package's layout holds: imports flow one way through the layers,
only the package front door imports the reference simulator, modules stay
small, and ``__all__`` names what exists."""

import ast
from pathlib import Path

import fedasync_jax

PKG = Path(fedasync_jax.__file__).parent
LAYERS = ("core", "data", "models", "sim", "theory", "run")


def layer_of(module: str):
  parts = module.split(".")
  if parts[0] != "fedasync_jax" or len(parts) < 2:
    return None
  return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def imports(path: Path):
  """The fedasync_jax modules a file imports (``from X import y`` gives
  ``X.y`` when ``y`` is a module of the package, else ``X``)."""
  out = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and \
        node.module.startswith("fedasync_jax"):
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        as_path = PKG.parent / (sub.replace(".", "/") + ".py")
        as_pkg = PKG.parent / sub.replace(".", "/") / "__init__.py"
        out.append(sub if as_path.exists() or as_pkg.exists()
                   else node.module)
    elif isinstance(node, ast.Import):
      out += [a.name for a in node.names if a.name.startswith("fedasync_jax")]
  return out


def library_modules():
  for path in sorted(PKG.rglob("*.py")):
    rel = path.relative_to(PKG.parent).with_suffix("")
    name = ".".join(rel.parts)
    if name.endswith(".__init__"):
      name = name[:-len(".__init__")]
    yield name, path


def test_imports_flow_one_way():
  bad = []
  for name, path in library_modules():
    own = layer_of(name)
    if own is None:  # the package front door imports everything
      continue
    for mod in imports(path):
      other = layer_of(mod)
      if other is not None and other > own:
        bad.append(f"{name} imports {mod}")
  assert not bad, bad


def test_nothing_in_the_library_imports_the_reference_simulator():
  users = [name for name, path in library_modules()
           if name != "fedasync_jax"
           and any(m == "fedasync_jax.sim.reference" for m in imports(path))]
  assert users == []


def test_modules_stay_under_500_lines():
  long = {name: n for name, path in library_modules()
          if (n := len(path.read_text().splitlines())) > 500}
  assert not long, long


def test_experiment_files_stay_under_500_lines():
  long = {path.name: n for path in (PKG.parent / "experiments").glob("*.py")
          if (n := len(path.read_text().splitlines())) > 500}
  assert not long, long


def test_all_names_exist_and_modules_are_reachable():
  for name in fedasync_jax.__all__:
    assert hasattr(fedasync_jax, name), name
  import fedasync_jax.models as m
  assert fedasync_jax.models is m and callable(m.mlp)


def test_files_the_library_cites_exist():
  import re
  root = PKG.parent
  cited = set()
  for _, path in library_modules():
    cited |= set(re.findall(
        r"\b((?:docs|benchmarks|experiments|tests)/[\w./-]+\.(?:md|py|json))",
        path.read_text()))
  assert cited, "the library cites no file: the pattern is broken"
  missing = sorted(c for c in cited if not (root / c).exists())
  assert not missing, missing
