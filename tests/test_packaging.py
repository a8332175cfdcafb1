"""pyproject.toml and environment.yml must list the same dependencies with the same lower bounds."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _req(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9][^,;\s]*)?", spec)
    return m.group(1).lower().replace("_", "-"), (m.group(2) or "").replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = dict(_req(s) for s in project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    listed = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for s in dep["pip"]:
                if not s.startswith("-e"):
                    listed.update([_req(s)])
        elif not dep.startswith(("python", "pip")) or dep.startswith("pyproject"):
            listed.update([_req(dep)])
    assert listed == wanted, (
        f"environment.yml だけにある: {sorted(set(listed.items()) - set(wanted.items()))}; "
        f"pyproject.toml だけにある: {sorted(set(wanted.items()) - set(listed.items()))}")


def test_environment_yml_installs_this_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    assert "-e ." in pip


def test_console_command_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["hsutils"] == "hsutils.running.cli:main"
