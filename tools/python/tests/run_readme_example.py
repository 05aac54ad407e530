"""CTest python_readme_example: pip-install tools/python into a fresh venv with no network,
then run the README's Python example, exactly as written, from a directory outside the checkout.

Usage: /usr/bin/python3 run_readme_example.py REPO MOEREF_BIN
Exit 0: it ran and wrote nothing outside its temporary directory; 77 (CTest: skipped): this
Python cannot make a venv with pip (Debian: python3-venv) or lacks numpy, setuptools or wheel.
"""

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def readme_example(readme):
    """The README's Python example: the first ```python block under "## Python"."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("\n## Python\n") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    if match is None:
        raise SystemExit("README.md: no ```python block under ## Python")
    return match.group(1)


def run(command, **kwargs):
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.run(command, text=True, capture_output=True, **kwargs)


def main():
    repo, moeref_bin = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve()
    for module in ("numpy", "setuptools", "wheel", "venv", "ensurepip"):
        if importlib.util.find_spec(module) is None:
            print(f"skipped: {sys.executable} has no {module}")
            return SKIP
    # No index, no find-links from a pip config, no user site: only what is on this machine.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory(prefix="moeref-readme-") as scratch:
        scratch = pathlib.Path(scratch)
        venv = scratch / "venv"
        made = run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], env=env)
        if made.returncode != 0:
            print(made.stdout + made.stderr)
            print("skipped: cannot make a venv with pip (Debian: apt-get install python3-venv)")
            return SKIP
        python = venv / "bin" / "python"
        # pip builds in the source tree (build/, *.egg-info): install from a copy.
        source = scratch / "source"
        ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
        shutil.copytree(repo / "tools" / "python", source, ignore=ignore)
        pip_install = ["-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-cache-dir", str(source)]
        installed = run([str(python)] + pip_install, env=dict(env, TMPDIR=str(scratch)))
        print(installed.stdout + installed.stderr)
        if installed.returncode != 0:
            print("FAIL: pip install --no-build-isolation --no-index ./tools/python failed")
            return 1

        elsewhere = scratch / "elsewhere"  # the working directory: not the checkout, and empty
        elsewhere.mkdir()
        example = scratch / "readme_example.py"
        example.write_text(readme_example(repo / "README.md"), encoding="utf-8")
        where = run([str(python), "-c", "import moeref; print(moeref.__file__)"], cwd=elsewhere, env=env)
        location = pathlib.Path(where.stdout.strip()).resolve()
        if where.returncode != 0 or venv.resolve() not in location.parents:
            print(where.stdout + where.stderr)
            print(f"FAIL: import moeref did not come from the venv ({location})")
            return 1
        env.update(MOEREF_GOLDEN_DIR=str(repo / "golden"), MOEREF_BIN=str(moeref_bin))
        ran = run([str(python), str(example)], cwd=elsewhere, env=env)
        print(ran.stdout + ran.stderr)
        if ran.returncode != 0:
            print("FAIL: the README's Python example failed")
            return 1
        left = sorted(path.name for path in elsewhere.iterdir())
        if left:
            print(f"FAIL: the example wrote into its working directory: {left}")
            return 1
    print("ok: installed with no network; the README example ran from outside the checkout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
