"""Unit tests for tools/python/moeref (stdlib unittest; numpy only).

Run: MOEREF_BIN=build/moeref /usr/bin/python3 -m unittest discover -s tools/python/tests
Tests that need the moeref binary are skipped when it cannot be found.
"""

import json
import os
import pathlib
import stat
import subprocess
import sys
import tempfile
import unittest
from fractions import Fraction

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools" / "python"))
import moeref  # noqa: E402

GOLDEN_DIR = REPO / "golden" / "mtf_top2"
GOLDEN = GOLDEN_DIR / "default_layer_train.trace.json"


def bits(value):
    return int(np.float32(value).view(np.uint32))


def from_bits(pattern):
    return np.array([pattern], dtype=np.uint32).view(np.float32)[0]


def moeref_bin_or_none():
    try:
        return moeref.find_moeref()
    except FileNotFoundError:
        return None


def trace_text(data, dtype="float32"):
    """A minimal trace with one step holding `data` (a list of JSON texts) and one loss."""
    return (
        '{"format": "moeref-trace", "format_version": 1, "config": {"variant": "mtf_top2"}, '
        f'"losses": {{"l": {data[0]}}}, "steps": [{{"name": "s", "dims": ["E"], "shape": [{len(data)}], '
        f'"dtype": "{dtype}", "data": [{",".join(data)}]}}]}}'
    )


class ExactFloat32Text(unittest.TestCase):
    def test_7_038531e_26_reads_as_0x15ae43fd(self):
        # The shortest text of 0x15ae43fd; decimal -> double -> float32 would give 0x15ae43fe.
        self.assertEqual(bits(moeref.float32_from_text("7.038531e-26")), 0x15AE43FD)
        self.assertEqual(bits(moeref.float32_from_text("-7.038531e-26")), 0x95AE43FD)
        self.assertEqual(moeref.float32_text(from_bits(0x15AE43FD)), "7.038531e-26")
        trace = moeref.parse_trace(trace_text(["7.038531e-26", "-7.038531e-26", "0.1"]))
        self.assertEqual([bits(v) for v in trace.steps["s"].array], [0x15AE43FD, 0x95AE43FD, bits(np.float32(0.1))])
        self.assertEqual(bits(trace.losses["l"]), 0x15AE43FD)

    def test_decimals_just_off_a_float32_midpoint_round_once(self):
        # A decimal a hair above (below) the midpoint of two float32s reads as a double ON the
        # midpoint; rounding that to even is wrong half the time. Each must go up (down).
        for low in (np.float32(1.0), np.float32(0.1), np.float32(3e-30), np.float32(1e-40), np.float32(3e38)):
            high = np.nextafter(low, np.float32(np.inf))
            midpoint = (Fraction(float(low)) + Fraction(float(high))) / 2
            tiny = midpoint / 10**40  # far below a double's resolution, far above the text's last digit
            for offset, expected in ((tiny, high), (-tiny, low)):
                exact = midpoint + offset
                text = _decimal_text(exact, 100)
                self.assertEqual(float(text), float(midpoint))  # the double path cannot tell
                self.assertEqual(bits(moeref.float32_from_text(text)), bits(expected), text)
                trace = moeref.parse_trace(trace_text([text, "1"]))
                self.assertEqual(bits(trace.steps["s"].array[0]), bits(expected), text)
            # Exactly on the midpoint: ties to even.
            even = low if bits(low) % 2 == 0 else high
            self.assertEqual(bits(moeref.float32_from_text(_decimal_text(midpoint, 200))), bits(even))

    def test_round_trip_of_many_bit_patterns(self):
        rng = np.random.default_rng(7)
        patterns = np.concatenate([
            rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32),
            np.array([0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x3F800000, 0x4B800000, 0x501502F9,
                      0x15AE43FD, 0x95AE43FD, 0x80000000, 0x00000000, 0x38D1B717, 0x3A83126F], dtype=np.uint32),
        ])
        values = patterns.view(np.float32)
        values = values[~np.isnan(values)]
        texts = [moeref.float32_text(v) for v in values[:200]] + moeref.floats.float32_texts(values[200:])
        # Through the trace reader (fast path, then the exact re-read where needed).
        quoted = [t if t[-1].isdigit() else f'"{t}"' for t in texts]
        trace = moeref.parse_trace(trace_text(quoted))
        np.testing.assert_array_equal(trace.steps["s"].array.view(np.uint32), values.view(np.uint32))

    def test_negative_zero_nan_and_infinities(self):
        self.assertEqual(moeref.float32_text(np.float32(-0.0)), "-0.0")
        self.assertEqual(moeref.float32_text(np.float32(0.0)), "0")
        self.assertEqual(moeref.float32_text(np.float32("nan")), "NaN")
        self.assertEqual(moeref.float32_text(np.float32("inf")), "Infinity")
        self.assertEqual(moeref.float32_text(np.float32("-inf")), "-Infinity")
        text = moeref.format_trace(
            {"variant": "mtf_top2"},
            {"s": (("E",), np.array([-0.0, np.nan, np.inf, -np.inf, 1.0, 1e10, 1e-4], dtype=np.float32))},
            losses={"l": np.float32(-0.0)},
        )
        self.assertIn('"data":[-0.0,"NaN","Infinity","-Infinity",1,1e+10,1e-04]', text)
        self.assertIn('"l": -0.0', text)
        back = moeref.parse_trace(text)
        values = back.steps["s"].array
        self.assertTrue(np.signbit(values[0]) and values[0] == 0)
        self.assertTrue(np.isnan(values[1]))
        self.assertEqual(list(values[2:4]), [np.inf, -np.inf])
        self.assertTrue(np.signbit(back.losses["l"]))

    def test_bad_values_are_refused_with_the_field(self):
        with self.assertRaisesRegex(ValueError, r"steps\.s\.data\[1\]"):
            moeref.parse_trace(trace_text(["1", '"nan"']))
        with self.assertRaisesRegex(ValueError, r"steps\.s\.data\[0\].*int32"):
            moeref.parse_trace(trace_text(["1.5", "2"], dtype="int32"))
        with self.assertRaisesRegex(ValueError, "format_version"):
            moeref.parse_trace('{"format": "moeref-trace", "format_version": 2}')
        with self.assertRaisesRegex(ValueError, "float64"):
            moeref.format_trace({}, {"s": (("E",), np.zeros(2))})


class ReadAndWrite(unittest.TestCase):
    def test_load_golden(self):
        trace = moeref.load_trace(GOLDEN)
        self.assertEqual(trace.config["variant"], "mtf_top2")
        self.assertEqual(trace.capacity["expert_capacity"], 4)
        raw_gates = trace.steps["raw_gates"]
        self.assertEqual(raw_gates.dims, ("G", "S", "E"))
        self.assertEqual(raw_gates.array.shape, (2, 8, 4))
        self.assertEqual(raw_gates.array.dtype, np.float32)
        self.assertEqual(trace.steps["index_1"].array.dtype, np.int32)
        self.assertEqual(trace.inputs["x"].dims, ("B", "L", "M"))
        self.assertIsInstance(trace.losses["gating_loss"], np.float32)
        self.assertIsInstance(trace.config["hparams"]["capacity_factor_train"], float)
        self.assertEqual(list(trace.steps)[:3], ["inputs", "logits", "raw_gates"])  # source order kept
        np.testing.assert_allclose(raw_gates.array.sum(axis=-1), 1.0, rtol=1e-6)

    @unittest.skipIf(moeref_bin_or_none() is None, "moeref binary not found (set MOEREF_BIN)")
    def test_rewrite_is_byte_identical_to_moeref(self):
        # moeref's writer and this one spell every number and lay out every line the same way.
        with tempfile.TemporaryDirectory() as scratch:
            for config in sorted((GOLDEN_DIR / "cases").glob("*.config.json")):
                fresh = pathlib.Path(scratch) / "fresh.json"
                subprocess.run([moeref_bin_or_none(), "run", str(config), "-o", str(fresh)], check=True,
                               capture_output=True)
                trace = moeref.load_trace(fresh)
                again = moeref.format_trace(trace.config, trace.steps, losses=trace.losses, inputs=trace.inputs,
                                            capacity=trace.capacity, generator=trace.generator)
                self.assertEqual(again, fresh.read_text(), config.name)

    @unittest.skipIf(moeref_bin_or_none() is None, "moeref binary not found (set MOEREF_BIN)")
    def test_moeref_reads_python_text_bit_exactly(self):
        # Python writes the logits, moeref reads them and writes them back as an input of its
        # trace, Python reads that: every bit pattern must survive both readers and writers.
        rng = np.random.default_rng(11)
        values = rng.integers(0, 2**32, 40000, dtype=np.uint64).astype(np.uint32).view(np.float32)
        values = values[np.isfinite(values) & (np.abs(values) < 1e30)][:4096]
        values[:4] = [from_bits(0x15AE43FD), from_bits(0x95AE43FD), np.float32(-0.0), from_bits(1)]
        logits = values.reshape(1, -1, 4)
        config = (
            '{"variant": "mtf_top2", "scope": "gating", "dims": {"G": 1, "S": %d, "E": 4}, '
            '"hparams": {"second_policy_train": "all"}, "inputs": {"logits": %s}}'
            % (logits.shape[1], moeref.format_tensor(("G", "S", "E"), logits))
        )
        with tempfile.TemporaryDirectory() as scratch:
            config_path, trace_path = pathlib.Path(scratch) / "config.json", pathlib.Path(scratch) / "trace.json"
            config_path.write_text(config)
            subprocess.run([moeref_bin_or_none(), "run", str(config_path), "-o", str(trace_path)], check=True,
                           capture_output=True)
            back = moeref.load_trace(trace_path).inputs["logits"].array
        np.testing.assert_array_equal(back.view(np.uint32), logits.view(np.uint32))


@unittest.skipIf(moeref_bin_or_none() is None, "moeref binary not found (set MOEREF_BIN)")
class CheckAgainstMoeref(unittest.TestCase):
    def setUp(self):
        self.scratch = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.scratch.name)
        self.golden = moeref.load_trace(GOLDEN)

    def tearDown(self):
        self.scratch.cleanup()

    def write(self, steps, **kwargs):
        path = self.dir / "candidate.json"
        moeref.write_trace(path, self.golden.config, steps, capacity=self.golden.capacity,
                           generator={"program": "test_moeref.py", "version": "0", "rng": "none"}, **kwargs)
        return path

    def test_written_trace_mode_follows_umask(self):
        previous = os.umask(0o022)
        try:
            path = self.write(self.golden.steps, losses=self.golden.losses, inputs=self.golden.inputs)
        finally:
            os.umask(previous)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

    def test_written_golden_passes(self):
        path = self.write(self.golden.steps, losses=self.golden.losses, inputs=self.golden.inputs)
        result = moeref.check(GOLDEN, path, report_path=self.dir / "report.json")
        self.assertEqual(result.exit_code, 0, result.text)
        self.assertTrue(result["pass"])
        self.assertEqual(result["not_checked"], 0)
        self.assertEqual(result["failing"], 0)
        self.assertTrue((self.dir / "report.json").is_file())
        self.assertEqual(json.loads((self.dir / "report.json").read_text())["format"], "moeref-check-report")

    def test_partial_candidate_reports_not_checked(self):
        steps = {name: self.golden.steps[name] for name in ("raw_gates", "index_1", "combine_tensor")}
        result = moeref.check(GOLDEN, self.write(steps))
        self.assertEqual(result.exit_code, 0, result.text)
        self.assertEqual(result.tensor("raw_gates")["status"], "match")
        self.assertEqual(result.tensor("outputs")["status"], "not_checked")
        self.assertGreater(result["not_checked"], 0)

    def test_changed_position_is_the_first_divergent_step(self):
        steps = dict(self.golden.steps)
        position = steps["position_in_expert_2"].array.copy()
        position[0, 0, position[0, 0].argmax()] += 1
        steps["position_in_expert_2"] = moeref.Tensor(("G", "S", "E"), position)
        result = moeref.check(GOLDEN, self.write(steps))
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result["first_divergent_step"], "position_in_expert_2")
        self.assertEqual(result.tensor("position_in_expert_2")["first"]["index"][:10], "[g=0, s=0,")

    def test_one_ulp_in_a_gate_passes_and_a_per_tensor_tolerance_is_applied(self):
        steps = dict(self.golden.steps)
        gates = steps["raw_gates"].array.copy()
        gates[0, 0, 0] = np.nextafter(gates[0, 0, 0], np.float32(2))
        steps["raw_gates"] = moeref.Tensor(("G", "S", "E"), gates)
        path = self.write(steps)
        self.assertEqual(moeref.check(GOLDEN, path).exit_code, 0)
        strict = moeref.check(GOLDEN, path, tolerances={"raw_gates": (0.0, 0.0)})
        self.assertEqual(strict.exit_code, 1)
        self.assertEqual(strict["first_divergent_step"], "raw_gates")

    def test_unreadable_candidate_is_exit_2(self):
        path = self.dir / "bad.json"
        path.write_text('{"format": "moeref-trace"}')
        result = moeref.check(GOLDEN, path)
        self.assertEqual(result.exit_code, 2)
        self.assertEqual(dict(result), {})
        self.assertIn("format_version", result.text)


def _decimal_text(value, digits):
    """A Fraction as a decimal with `digits` significant digits (truncated), e.g. "1.2345e-7"."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    scaled = int(value * 10 ** (digits - 1))
    text = str(scaled)
    return f"{sign}{text[0]}.{text[1:]}e{exponent}"


if __name__ == "__main__":
    unittest.main()
