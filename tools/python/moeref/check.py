"""Running the C++ checker, `moeref check GOLDEN CANDIDATE --report R.json`, from Python."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

# tools/python/moeref/check.py -> the repository root.
_REPO = pathlib.Path(__file__).resolve().parents[3]

EXIT_AGREE, EXIT_DIFFER, EXIT_BAD_INPUT = 0, 1, 2


class CheckResult(dict):
    """The parsed JSON report (format "moeref-check-report"), plus `exit_code` and `text`.

    Keys as in the report: pass, first_divergent_step, checked, failing, not_checked, tensors.
    """

    def __init__(self, report, exit_code, text):
        super().__init__(report)
        self.exit_code = exit_code
        self.text = text

    def tensor(self, name, section="steps"):
        """One tensor's entry of the report (status, mismatches, first, worst, ...), or None."""
        for item in self.get("tensors", []):
            if item["name"] == name and item["section"] == section:
                return item
        return None


def find_moeref(moeref_bin=None):
    """The moeref binary: the argument, else $MOEREF_BIN, else build/moeref in the repository."""
    for candidate in (moeref_bin, os.environ.get("MOEREF_BIN"), _REPO / "build" / "moeref"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    found = shutil.which("moeref")
    if found:
        return found
    raise FileNotFoundError(
        "moeref binary not found: pass moeref_bin=, set MOEREF_BIN, or build it (tools/dev.sh build -> build/moeref)"
    )


def check(golden_path, candidate_path, report_path=None, moeref_bin=None, tolerances=None, atol=None, rtol=None):
    """Runs `moeref check` and returns a CheckResult (the report dict, with .exit_code and .text).

    tolerances: {tensor name: (atol, rtol)}, passed as --tolerance NAME=ATOL,RTOL.
    Exit code 0: the traces agree, 1: they differ, 2: an input is unreadable (then the
    report is empty and .text holds moeref's message).
    """
    command = [find_moeref(moeref_bin), "check", str(golden_path), str(candidate_path)]
    if atol is not None:
        command += ["--atol", repr(float(atol))]
    if rtol is not None:
        command += ["--rtol", repr(float(rtol))]
    for name, (tensor_atol, tensor_rtol) in sorted((tolerances or {}).items()):
        command += ["--tolerance", f"{name}={float(tensor_atol)!r},{float(tensor_rtol)!r}"]
    with tempfile.TemporaryDirectory(prefix="moeref-check-") as scratch:
        report_file = pathlib.Path(report_path) if report_path else pathlib.Path(scratch) / "report.json"
        if report_file.exists():
            report_file.unlink()  # never return an earlier run's report
        command += ["--report", str(report_file)]
        completed = subprocess.run(command, capture_output=True, text=True)
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
    return CheckResult(report, completed.returncode, completed.stdout + completed.stderr)
