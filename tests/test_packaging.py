"""The wheel ships every package, the one copy of the configs, and the packaged models."""
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_package_folder():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "fewzero").rglob("__init__.py")}
    assert folders | {"fewzero.configs"} == listed


def test_the_wheel_ships_the_top_level_configs_and_the_packaged_models(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("fewzero-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"fewzero/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    assert len(configs) >= 5 and configs <= names
    models = {f"fewzero/pretrained/{p.name}" for p in (REPO / "fewzero" / "pretrained").glob("*.pt")}
    assert models and models <= names
    modules = {str(p.relative_to(REPO)) for p in (REPO / "fewzero").rglob("*.py")}
    assert modules <= names
    assert not (REPO / "fewzero" / "configs").exists()  # one copy: the top-level folder
