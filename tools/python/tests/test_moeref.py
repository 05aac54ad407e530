"""Unit tests for tools/python/moeref (stdlib unittest; numpy only).

Run: MOEREF_BIN=build/moeref /usr/bin/python3 -m unittest discover -s tools/python/tests
Tests that need the moeref binary are skipped when it cannot be found.
"""

import hashlib
import io
import json
import os
import pathlib
import stat
import subprocess
import sys
import tarfile
import tempfile
import unittest
import unittest.mock
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
        with self.assertRaisesRegex(ValueError, "format_version: got 3; allowed: 1 or 2"):
            moeref.parse_trace('{"format": "moeref-trace", "format_version": 3}')
        with self.assertRaisesRegex(ValueError, "format_version: got 2.0; allowed: 1 or 2"):
            moeref.parse_trace('{"format": "moeref-trace", "format_version": 2.0}')  # moeref refuses it too
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


class WithScratchAndGolden(unittest.TestCase):
    """A scratch directory (self.dir) and the golden trace (self.golden) for each test."""

    def setUp(self):
        self.scratch = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.scratch.name)
        self.golden = moeref.load_trace(GOLDEN)

    def tearDown(self):
        self.scratch.cleanup()


@unittest.skipIf(moeref_bin_or_none() is None, "moeref binary not found (set MOEREF_BIN)")
class CheckAgainstMoeref(WithScratchAndGolden):

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


def as_bits(array):
    """The array's bit patterns (uint32 for float32), so NaN payloads and -0.0 compare exactly."""
    return array.view(np.uint32) if array.dtype == np.float32 else array


def moeref_writes_sidecars():
    """True when the moeref binary found knows `run --sidecars-above` (trace format_version 2)."""
    binary = moeref_bin_or_none()
    if binary is None:
        return False
    usage = subprocess.run([binary, "run", "--help"], capture_output=True, text=True)
    return "--sidecars-above" in usage.stdout + usage.stderr


GENERATOR = {"program": "test_moeref.py", "version": "0", "rng": "none"}


def assert_same_trace(test, got, expected):
    """Same tensors (names, order, dims, dtypes, reads, every bit), losses, config and capacity."""
    test.assertEqual(list(got.inputs), list(expected.inputs))
    test.assertEqual(list(got.steps), list(expected.steps))
    for section in ("inputs", "steps"):
        for name, tensor in getattr(expected, section).items():
            other = getattr(got, section)[name]
            test.assertEqual(other.dims, tensor.dims, name)
            test.assertEqual(other.array.dtype, tensor.array.dtype, name)
            test.assertEqual(other.reads, tensor.reads, name)
            np.testing.assert_array_equal(as_bits(other.array), as_bits(tensor.array), name)
    test.assertEqual({k: bits(v) for k, v in got.losses.items()}, {k: bits(v) for k, v in expected.losses.items()})
    test.assertEqual(got.config, expected.config)
    test.assertEqual(got.capacity, expected.capacity)


class SidecarTraces(WithScratchAndGolden):
    """format_version 2: tensors above a size in .npy sidecars, read back exactly and checked."""

    def write_golden(self, name="x.trace.json", sidecars_above=16, steps=None):
        path = self.dir / name
        moeref.write_trace(path, self.golden.config, self.golden.steps if steps is None else steps,
                           losses=self.golden.losses, inputs=self.golden.inputs, capacity=self.golden.capacity,
                           generator=self.golden.generator, sidecars_above=sidecars_above)
        return path

    def test_no_threshold_or_nothing_above_it_keeps_version_1_byte_for_byte(self):
        inline = self.write_golden("inline.json", sidecars_above=None)
        above_all = self.write_golden("above_all.json", sidecars_above=10**9)
        expected = moeref.format_trace(self.golden.config, self.golden.steps, losses=self.golden.losses,
                                       inputs=self.golden.inputs, capacity=self.golden.capacity,
                                       generator=self.golden.generator)
        self.assertEqual(inline.read_text(), expected)
        self.assertEqual(above_all.read_bytes(), inline.read_bytes())
        self.assertEqual(inline.read_bytes(), GOLDEN.read_bytes())  # the golden was written by moeref
        self.assertFalse((self.dir / "inline.arrays").exists())
        self.assertFalse((self.dir / "above_all.arrays").exists())

    def test_a_directory_of_the_users_where_the_arrays_go_is_never_removed(self):
        arrays = self.dir / "x.trace.arrays"
        arrays.mkdir()
        (arrays / "keep.txt").write_text("mine")
        self.write_golden(sidecars_above=None)  # inline: the directory is left alone
        self.assertEqual((arrays / "keep.txt").read_text(), "mine")
        with self.assertRaisesRegex(ValueError, "not only sidecars"):
            self.write_golden(sidecars_above=16)
        self.assertEqual((arrays / "keep.txt").read_text(), "mine")
        self.assertEqual(moeref.load_trace(self.dir / "x.trace.json").format_version, 1)
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["x.trace.arrays", "x.trace.json"])

    def test_sidecar_and_inline_forms_read_to_equal_arrays(self):
        sidecar = moeref.load_trace(self.write_golden(sidecars_above=16))
        self.assertEqual(sidecar.format_version, 2)
        self.assertIn("steps.combine_tensor", sidecar.files)  # 2*8*4*4 = 256 elements
        self.assertNotIn("steps.index_1", sidecar.files)  # 16 elements: not more than 16
        self.assertEqual(moeref.load_trace(GOLDEN).format_version, 1)
        assert_same_trace(self, sidecar, self.golden)
        everything = moeref.load_trace(self.write_golden("all.json", sidecars_above=0))
        self.assertEqual(len(everything.files), len(self.golden.inputs) + len(self.golden.steps))
        assert_same_trace(self, everything, self.golden)

    def test_round_trip_is_bit_exact_for_nan_payloads_negative_zero_and_int32(self):
        floats = np.array([0x7FC00000, 0x7FC00001, 0x7F800001, 0xFFBADBAD, 0x80000000, 0x00000000, 0x00000001,
                           0x7F800000, 0xFF800000, 0x15AE43FD, 0x7F7FFFFF, 0x807FFFFF], dtype=np.uint32)
        floats = floats.view(np.float32).reshape(3, 4)
        ints = np.array([np.iinfo(np.int32).min, -1, 0, 1, np.iinfo(np.int32).max, 7], dtype=np.int32)
        steps = {"f": (("G", "E"), floats), "i": (("S",), ints), "scalar": ((), np.array(np.float32(-0.0))),
                 "empty": (("E", "C"), np.zeros((3, 0), np.float32))}
        path = self.dir / "bits.json"
        moeref.write_trace(path, {"variant": "mtf_top2"}, steps, generator=GENERATOR, sidecars_above=0)
        back = moeref.load_trace(path)
        self.assertEqual(set(back.files), {"steps.f", "steps.i", "steps.scalar"})  # 0 elements stay inline
        np.testing.assert_array_equal(back.steps["f"].array.view(np.uint32), floats.view(np.uint32))
        np.testing.assert_array_equal(back.steps["i"].array, ints)
        self.assertEqual(back.steps["i"].array.dtype, np.int32)
        self.assertEqual(back.steps["scalar"].array.shape, ())
        self.assertEqual(bits(back.steps["scalar"].array[()]), 0x80000000)
        self.assertEqual(back.steps["empty"].array.shape, (3, 0))
        back.steps["f"].array[0, 0] = 1.0  # arrays read from sidecars are ordinary writable arrays
        self.assertTrue(back.steps["i"].array.flags.writeable)

    def test_layout_names_and_hashes_follow_the_format(self):
        path = self.write_golden(sidecars_above=16)
        doc = json.loads(path.read_text())
        self.assertEqual(doc["format_version"], 2)
        arrays = self.dir / "x.trace.arrays"
        step_names = [step["name"] for step in doc["steps"]]
        combine = doc["steps"][step_names.index("combine_tensor")]
        index = step_names.index("combine_tensor")
        self.assertEqual(list(combine), ["name", "reads", "dims", "shape", "dtype", "file", "sha256"])
        self.assertEqual(combine["file"], f"x.trace.arrays/steps.{index:04d}.combine_tensor.npy")
        self.assertEqual(list(doc["inputs"]["x"]), ["dims", "shape", "dtype", "file", "sha256"])
        self.assertEqual(doc["inputs"]["x"]["file"], "x.trace.arrays/inputs.x.npy")
        line = next(line for line in path.read_text().splitlines() if '"name":"combine_tensor"' in line)
        self.assertTrue(line.startswith('  {"name":"combine_tensor","reads":['), line)
        self.assertIn(f',"file":"x.trace.arrays/steps.{index:04d}.combine_tensor.npy","sha256":"', line)
        written = sorted(p.name for p in arrays.iterdir())
        referenced = sorted(t["file"].split("/")[1] for t in list(doc["inputs"].values()) + doc["steps"] if "file" in t)
        self.assertEqual(written, referenced)
        for tensor in list(doc["inputs"].values()) + doc["steps"]:
            if "file" in tensor:
                blob = (self.dir / tensor["file"]).read_bytes()
                self.assertEqual(hashlib.sha256(blob).hexdigest(), tensor["sha256"])
        # A name without ".json" keeps all of it.
        self.write_golden("plain", sidecars_above=16)
        self.assertIn('"file":"plain.arrays/inputs.x.npy"', (self.dir / "plain").read_text())
        self.assertEqual(moeref.sidecars.arrays_dir_name(".json"), ".json.arrays")  # as moeref names it

    def test_numpy_loads_every_sidecar_and_writes_the_same_bytes(self):
        path = self.write_golden(sidecars_above=0)
        back = moeref.load_trace(path)
        for key, file in back.files.items():
            section, name = key.split(".", 1)
            expected = getattr(back, section)[name].array
            loaded = np.load(self.dir / file)
            self.assertEqual(loaded.dtype, expected.dtype, key)
            np.testing.assert_array_equal(as_bits(loaded), as_bits(expected), key)
            saved = io.BytesIO()
            np.save(saved, expected)
            self.assertEqual((self.dir / file).read_bytes(), saved.getvalue(), key)
        for shape in [(), (1,), (5,), (2, 3), (4, 1024, 16, 80), (8, 2048, 64, 1024), (3, 0), (123456789, 7)]:
            saved = io.BytesIO()
            np.save(saved, np.zeros(shape if np.prod(shape) < 10**6 else (0,), np.int32))
            header = moeref.npy.header_bytes("int32", shape)
            self.assertEqual(len(header) % 64, 0)
            if np.prod(shape) < 10**6:
                self.assertEqual(header, saved.getvalue()[: len(header)], shape)
            self.assertTrue(header.endswith(b"\n"))
            self.assertIn(f"'shape': {shape!r}, }}".encode(), header)

    def test_unsafe_names_get_index_only_file_names(self):
        steps = {"ok": (("E",), np.arange(4, dtype=np.int32)), "two words": (("E",), np.arange(4, dtype=np.int32))}
        inputs = {"b/../c": (("E",), np.ones(4, np.float32)), "a": (("E",), np.ones(4, np.float32))}
        path = self.dir / "names.json"
        moeref.write_trace(path, {"variant": "mtf_top2"}, steps, inputs=inputs, generator=GENERATOR, sidecars_above=0)
        self.assertEqual(sorted(p.name for p in (self.dir / "names.arrays").iterdir()),
                         ["inputs.0001.npy", "inputs.a.npy", "steps.0000.ok.npy", "steps.0001.npy"])
        back = moeref.load_trace(path)
        self.assertEqual(back.files["inputs.b/../c"], "names.arrays/inputs.0001.npy")
        np.testing.assert_array_equal(back.steps["two words"].array, np.arange(4))

    def test_modes_follow_the_umask(self):
        for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o027, 0o640, 0o750)):
            previous = os.umask(umask)
            try:
                path = self.write_golden(f"mode{umask:o}.json")
            finally:
                os.umask(previous)
            arrays = self.dir / f"mode{umask:o}.arrays"
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), file_mode)
            self.assertEqual(stat.S_IMODE(os.stat(arrays).st_mode), dir_mode)
            for sidecar in arrays.iterdir():
                self.assertEqual(stat.S_IMODE(os.stat(sidecar).st_mode), file_mode, sidecar.name)

    def test_rewriting_replaces_the_arrays_and_a_failure_leaves_the_old_trace(self):
        path = self.write_golden()
        first_text = path.read_text()
        first_files = {p.name: p.read_bytes() for p in (self.dir / "x.trace.arrays").iterdir()}
        # A failure after some sidecars were written (a float64 step comes late): nothing changes.
        steps = dict(self.golden.steps)
        steps["late"] = (("E",), np.zeros(4))
        with self.assertRaisesRegex(ValueError, "late.*float64"):
            self.write_golden(steps=steps)
        self.assertEqual(path.read_text(), first_text)
        self.assertEqual({p.name: p.read_bytes() for p in (self.dir / "x.trace.arrays").iterdir()}, first_files)
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["x.trace.arrays", "x.trace.json"])
        # A new trace with fewer sidecars: the old arrays directory is replaced, not merged.
        fewer = {name: self.golden.steps[name] for name in ("raw_gates", "combine_tensor")}
        self.write_golden(steps=fewer, sidecars_above=100)
        self.assertEqual(sorted(p.name for p in (self.dir / "x.trace.arrays").iterdir()),
                         ["inputs.wi.npy", "inputs.wo.npy", "inputs.x.npy", "steps.0001.combine_tensor.npy"])
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["x.trace.arrays", "x.trace.json"])
        expected = moeref.Trace(self.golden.config, self.golden.capacity, self.golden.losses, self.golden.inputs, fewer)
        assert_same_trace(self, moeref.load_trace(path), expected)
        # All inline over a trace with sidecars: the old arrays directory goes once the JSON is in place.
        self.write_golden(sidecars_above=None)
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["x.trace.json"])
        self.assertEqual(path.read_bytes(), GOLDEN.read_bytes())

    def test_sidecars_above_must_be_none_or_a_non_negative_integer(self):
        for bad in (-1, 1.5, True, "3"):
            with self.assertRaisesRegex(ValueError, "sidecars_above: got .*; allowed: None .* or an integer >= 0"):
                self.write_golden(sidecars_above=bad)
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_an_exact_reread_of_the_text_reads_each_sidecar_once(self):
        # 7.038531e-26 is a double on a float32 midpoint: the reader parses the text a second time,
        # keeping number texts; the sidecars read the first time are not read again.
        tiny = np.array([from_bits(0x15AE43FD), 1.0], dtype=np.float32)
        steps = {"big": (("S",), np.arange(32, dtype=np.float32)), "tiny": (("E",), tiny)}
        path = self.dir / "reread.json"
        moeref.write_trace(path, {"variant": "mtf_top2"}, steps, generator=GENERATOR, sidecars_above=8)
        self.assertIn("7.038531e-26", path.read_text())
        reads = []
        original = moeref.packed.DirectorySidecars.read

        def counted(sidecars, relative, field):
            reads.append(relative)
            return original(sidecars, relative, field)

        with unittest.mock.patch.object(moeref.packed.DirectorySidecars, "read", counted):
            back = moeref.load_trace(path)
        self.assertEqual(reads, ["reread.arrays/steps.0000.big.npy"])
        self.assertEqual(bits(back.steps["tiny"].array[0]), 0x15AE43FD)
        np.testing.assert_array_equal(back.steps["big"].array, np.arange(32))

    def test_text_with_sidecars_needs_its_directory(self):
        path = self.write_golden()
        text = path.read_text()
        with self.assertRaisesRegex(ValueError, r"inputs\.router_weights\.file: .* given as text"):
            moeref.parse_trace(text)
        assert_same_trace(self, moeref.parse_trace(text, base_dir=self.dir), self.golden)


class SidecarValidation(unittest.TestCase):
    """Every way a sidecar or its reference can be wrong is refused, naming field, file, found, expected."""

    def setUp(self):
        self.scratch = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.scratch.name)
        self.values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        self.path = self.dir / "t.json"
        steps = {"small": (("E",), np.arange(4, dtype=np.int32)), "big": (("G", "S", "E"), self.values)}
        moeref.write_trace(self.path, {"variant": "mtf_top2"}, steps, generator=GENERATOR, sidecars_above=8)
        self.sidecar = self.dir / "t.arrays" / "steps.0001.big.npy"
        self.doc = json.loads(self.path.read_text())

    def tearDown(self):
        self.scratch.cleanup()

    def refused(self, pattern):
        return self.assertRaisesRegex(ValueError, pattern)

    def rewrite_doc(self, change):
        doc = json.loads(self.path.read_text())
        change(doc["steps"][1])
        self.path.write_text(json.dumps(doc))

    def replace_sidecar(self, blob):
        """Puts other bytes in the sidecar and their sha256 in the trace, so only the header check fails."""
        self.sidecar.write_bytes(blob)
        self.rewrite_doc(lambda step: step.update(sha256=hashlib.sha256(blob).hexdigest()))

    def saved(self, array):
        out = io.BytesIO()
        np.save(out, array)
        return out.getvalue()

    def test_the_written_trace_reads(self):
        np.testing.assert_array_equal(moeref.load_trace(self.path).steps["big"].array, self.values)

    def test_changed_bytes_fail_the_sha256(self):
        blob = bytearray(self.sidecar.read_bytes())
        blob[-1] ^= 1
        self.sidecar.write_bytes(blob)
        found = hashlib.sha256(blob).hexdigest()
        expected = self.doc["steps"][1]["sha256"]
        with self.refused(rf"steps\[1\] \(big\)\.sha256: sidecar .*steps\.0001\.big\.npy: found {found}; "
                          rf"expected {expected}"):
            moeref.load_trace(self.path)

    def test_wrong_magic_version_order_dtype_shape_and_size(self):
        blob = self.sidecar.read_bytes()
        not_a_dict = r"\(big\)\.file: .* found header .*; expected a dict"
        cases = [
            (b"\x93NUMPZ" + blob[6:],
             r"steps\[1\] \(big\)\.file: sidecar .*big\.npy: found first bytes .*; expected a \.npy"),
            (blob[:6] + b"\x09\x00" + blob[8:], r"\(big\)\.file: .* found \.npy format version 9\.0; expected .*1\.0"),
            (self.saved(self.values.astype(np.int32)), r"\(big\)\.dtype: .* found descr '<i4'; expected '<f4'"),
            (self.saved(np.asfortranarray(self.values)), r"\(big\)\.file: .* found fortran_order True; expected False"),
            (self.saved(self.values.reshape(6, 4)), r"\(big\)\.shape: .* found shape \(6, 4\); expected \(2, 3, 4\)"),
            (blob + b"\0\0\0\0", rf"\(big\)\.file: .* found {len(blob) + 4} bytes; expected {len(blob)}"),
            (blob[:-4], rf"\(big\)\.file: .* found {len(blob) - 4} bytes; expected {len(blob)}"),
            (blob[:9], r"\(big\)\.file: .* found 9 bytes; expected a whole \.npy header"),
            (blob[:10] + b"{'descr': '<f4'}".ljust(len(blob) - 10), not_a_dict),
            (blob[:10] + b"__import__('os')".ljust(len(blob) - 10), not_a_dict),
        ]
        for bad, pattern in cases:
            self.replace_sidecar(bad)
            with self.subTest(pattern=pattern), self.refused(pattern):
                moeref.load_trace(self.path)
        # numpy's own version 2.0 header (uint32 length) is read too.
        version_2 = io.BytesIO()
        np.lib.format.write_array(version_2, self.values, version=(2, 0))
        self.replace_sidecar(version_2.getvalue())
        np.testing.assert_array_equal(moeref.load_trace(self.path).steps["big"].array, self.values)

    def test_file_fields_that_could_leave_the_directory(self):
        for bad in ("/etc/passwd", "../t.arrays/steps.0001.big.npy", "t.arrays/../t.arrays/steps.0001.big.npy",
                    "t.arrays\\steps.0001.big.npy", "", "t.arrays//x.npy", 7):
            self.rewrite_doc(lambda step: step.update(file=bad))
            with self.subTest(file=bad), self.refused(r"steps\[1\]\.file: got .*; allowed: a relative path"):
                moeref.load_trace(self.path)

    def test_a_missing_sidecar(self):
        self.sidecar.unlink()
        with self.refused(r"steps\[1\]\.file: sidecar .*steps\.0001\.big\.npy: cannot be read"):
            moeref.load_trace(self.path)

    def test_data_and_file_together_or_neither(self):
        self.rewrite_doc(lambda step: step.update(data=[0] * 24))
        with self.refused(r'steps\.big: has both "data" and "file"; allowed: exactly one'):
            moeref.load_trace(self.path)
        self.rewrite_doc(lambda step: [step.pop("data"), step.pop("file")])
        with self.refused(r'steps\.big\.data: missing; allowed: "data" .* or "file"'):
            moeref.load_trace(self.path)

    def test_sha256_missing_or_malformed(self):
        sha = self.doc["steps"][1]["sha256"]
        self.rewrite_doc(lambda step: step.pop("sha256"))
        with self.refused(r"steps\[1\] \(big\)\.sha256: missing"):
            moeref.load_trace(self.path)
        for bad in (sha.upper(), sha[:-1], 5):
            self.rewrite_doc(lambda step: step.update(sha256=bad))
            with self.subTest(sha=bad), self.refused(r"steps\[1\] \(big\)\.sha256: got .*; allowed: 64 lowercase hex"):
                moeref.load_trace(self.path)

    def test_a_sidecar_in_a_version_1_trace(self):
        doc = dict(self.doc, format_version=1)
        self.path.write_text(json.dumps(doc))
        with self.refused(r"steps\[1\]\.file: a sidecar in a format_version 1 trace"):
            moeref.load_trace(self.path)

    def test_an_input_sidecar_names_its_field(self):
        path = self.dir / "in.json"
        moeref.write_trace(path, {"variant": "mtf_top2"}, {}, inputs={"x": (("G", "S", "E"), self.values)},
                           generator=GENERATOR, sidecars_above=0)
        (self.dir / "in.arrays" / "inputs.x.npy").write_bytes(self.saved(self.values.reshape(4, 6)))
        with self.refused(r"inputs\.x\.shape: sidecar .*inputs\.x\.npy: found shape \(4, 6\)"):
            moeref.load_trace(path)


class PackedTraces(unittest.TestCase):
    """A trace and its sidecars as one ustar archive: read in place, found by content, not name."""

    def setUp(self):
        self.scratch = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.scratch.name)
        self.golden = moeref.load_trace(GOLDEN)
        self.path = self.dir / "x.trace.json"
        moeref.write_trace(self.path, self.golden.config, self.golden.steps, losses=self.golden.losses,
                           inputs=self.golden.inputs, capacity=self.golden.capacity, generator=self.golden.generator,
                           sidecars_above=16)

    def tearDown(self):
        self.scratch.cleanup()

    def test_pack_reads_back_and_is_byte_reproducible(self):
        packed = self.dir / "shared.bin"  # any name: a tar is recognised by its content
        moeref.pack_trace(self.path, packed)
        self.assertTrue(moeref.is_packed(packed))
        self.assertFalse(moeref.is_packed(self.path))
        back = moeref.load_trace(packed)
        assert_same_trace(self, back, self.golden)
        self.assertTrue(all(file.startswith("trace.arrays/") for file in back.files.values()))
        again = self.dir / "again.tar"
        moeref.pack_trace(self.path, again)
        self.assertEqual(packed.read_bytes(), again.read_bytes())
        with tarfile.open(packed) as archive:
            members = archive.getmembers()
            self.assertEqual(members[0].name, "trace.json")
            for member in members:
                self.assertEqual((member.mtime, member.uid, member.gid, member.mode), (0, 0, 0, 0o644))
                self.assertEqual((member.uname, member.gname), ("", ""))
            originals = moeref.load_trace(self.path).files
            self.assertEqual([m.name for m in members[1:]],
                             ["trace.arrays/" + f.split("/")[-1] for f in originals.values()])
            for member, original in zip(members[1:], originals.values()):
                self.assertEqual(archive.extractfile(member).read(), (self.dir / original).read_bytes())
            archive.extractall(self.dir / "unpacked")
        assert_same_trace(self, moeref.load_trace(self.dir / "unpacked" / "trace.json"), self.golden)

    def test_a_tar_as_gnu_tar_writes_it_and_a_version_1_trace_packed(self):
        gnu = self.dir / "gnu.tar"
        with tarfile.open(gnu, "w", format=tarfile.GNU_FORMAT) as archive:
            archive.add(GOLDEN, arcname="./trace.json")
        assert_same_trace(self, moeref.load_trace(gnu), self.golden)

    def test_a_member_missing_or_not_a_file(self):
        packed = self.dir / "p.tar"
        moeref.pack_trace(self.path, packed)
        with tarfile.open(packed) as archive:
            members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
        missing, link = self.dir / "missing.tar", self.dir / "link.tar"
        with tarfile.open(missing, "w", format=tarfile.USTAR_FORMAT) as archive:
            for member, blob in members:
                if "combine_tensor" not in member.name:
                    archive.addfile(member, io.BytesIO(blob))
        with self.assertRaisesRegex(ValueError, r"steps\[\d+\]\.file: sidecar .*missing\.tar:trace\.arrays/steps\.\d+"
                                                r"\.combine_tensor\.npy: no such member"):
            moeref.load_trace(missing)
        with tarfile.open(link, "w", format=tarfile.USTAR_FORMAT) as archive:
            for member, blob in members:
                if "combine_tensor" in member.name:
                    member.type, member.linkname, member.size = tarfile.SYMTYPE, "elsewhere.npy", 0
                    blob = b""
                archive.addfile(member, io.BytesIO(blob))
        with self.assertRaisesRegex(ValueError, r"combine_tensor\.npy: a tar member of type .*; expected a regular"):
            moeref.load_trace(link)
        no_trace = self.dir / "no_trace.tar"
        with tarfile.open(no_trace, "w", format=tarfile.USTAR_FORMAT) as archive:
            archive.addfile(*reversed((io.BytesIO(members[1][1]), members[1][0])))
        with self.assertRaisesRegex(ValueError, r"no_trace\.tar:trace\.json: no such member"):
            moeref.load_trace(no_trace)


@unittest.skipUnless(moeref_writes_sidecars(), "the moeref binary found does not write sidecars (run --sidecars-above)")
class SidecarsWithMoeref(unittest.TestCase):
    """The C++ and Python sides of the sidecar format agree byte for byte, and read each other."""

    def test_python_rewrites_moeref_sidecar_traces_byte_for_byte(self):
        with tempfile.TemporaryDirectory() as scratch:
            scratch = pathlib.Path(scratch)
            for config in sorted((GOLDEN_DIR / "cases").glob("*.config.json")):
                fresh, again = scratch / "fresh.trace.json", scratch / "again" / "fresh.trace.json"
                again.parent.mkdir(exist_ok=True)
                subprocess.run([moeref_bin_or_none(), "run", str(config), "-o", str(fresh), "--sidecars-above", "16"],
                               check=True, capture_output=True)
                trace = moeref.load_trace(fresh)
                self.assertEqual(trace.format_version, 2, config.name)
                moeref.write_trace(again, trace.config, trace.steps, losses=trace.losses, inputs=trace.inputs,
                                   capacity=trace.capacity, generator=trace.generator, sidecars_above=16)
                self.assertEqual(again.read_text(), fresh.read_text(), config.name)
                for file in trace.files.values():
                    self.assertEqual((again.parent / file).read_bytes(), (scratch / file).read_bytes(), file)

    def test_moeref_checks_a_python_sidecar_trace_against_the_inline_golden(self):
        golden = moeref.load_trace(GOLDEN)
        with tempfile.TemporaryDirectory() as scratch:
            candidate = pathlib.Path(scratch) / "candidate.json"
            moeref.write_trace(candidate, golden.config, golden.steps, losses=golden.losses, inputs=golden.inputs,
                               capacity=golden.capacity, generator=GENERATOR, sidecars_above=0)
            result = moeref.check(GOLDEN, candidate)
            self.assertEqual(result.exit_code, 0, result.text)
            self.assertEqual(result["not_checked"], 0)


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
