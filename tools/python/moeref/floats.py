"""Exact float32 text: parsing a decimal straight to float32, and the shortest text back.

Why not simply ``numpy.float32(text)`` or ``json.loads``: both go through a Python float
(double) first, and decimal -> double -> float32 rounds twice. For a few decimals that lands
on the wrong float32. moeref's own example: ``"7.038531e-26"`` is the shortest text of the
float32 with bits 0x15ae43fd, but ``numpy.float32("7.038531e-26")`` gives 0x15ae43fe
(numpy 1.24). The converter below rounds once, exactly, and is still fast: it takes the
double path and only falls back to exact rational arithmetic where the double lands exactly
on a float32 rounding midpoint, the only case where rounding twice can differ from rounding
once (rounding to double is monotonic, and every float32 midpoint is a double).
"""

from fractions import Fraction

import numpy as np

# The strings moeref writes for the values JSON cannot hold.
NAN_TEXT = "NaN"
POSITIVE_INFINITY_TEXT = "Infinity"
NEGATIVE_INFINITY_TEXT = "-Infinity"
_SPECIAL = {NAN_TEXT: np.nan, POSITIVE_INFINITY_TEXT: np.inf, NEGATIVE_INFINITY_TEXT: -np.inf}

_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Halfway between FLT_MAX and the next power of two: above it, round-to-nearest gives inf.
_FLOAT32_OVERFLOW_MIDPOINT = Fraction(_FLOAT32_MAX) + Fraction(2) ** 103


class FloatText(float):
    """A JSON number read by :func:`json.loads`: the double value, plus the text it came from.

    It behaves as a Python float (config values such as thresholds are doubles in the
    source), and :func:`float32_array` reads its text exactly when it meets a float32 tensor.
    """

    def __new__(cls, text):
        value = super().__new__(cls, text)
        value.text = text
        return value


def _exact_value(item):
    """The exact rational value of one JSON item (a FloatText, an int or a decimal string)."""
    if isinstance(item, FloatText):
        return Fraction(item.text)
    return Fraction(item)


def float32_array(items, field="data"):
    """Converts JSON items (numbers, FloatText, or "NaN"/"Infinity"/"-Infinity") to float32, exactly.

    Returns (array, needs_text): needs_text lists the positions where the decimal text is
    needed to round exactly (the double lies on a float32 midpoint) but the item is a plain
    float without it. Raises ValueError naming `field` for anything that is not allowed.
    """
    items = items if isinstance(items, list) else list(items)
    if set(map(type, items)) <= {float, int, FloatText}:
        doubles = np.array(items, dtype=np.float64)
    else:
        doubles = np.empty(len(items), dtype=np.float64)
        for i, item in enumerate(items):
            if isinstance(item, str) and item in _SPECIAL:
                doubles[i] = _SPECIAL[item]
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                doubles[i] = float(item)
            else:
                raise ValueError(f"{field}[{i}]: got {item!r}; allowed: a number or one of NaN, Infinity, -Infinity")
    with np.errstate(over="ignore"):
        result = doubles.astype(np.float32)  # one rounding of the double: right unless on a midpoint
    as_double = result.astype(np.float64)
    off = np.isfinite(doubles) & (doubles != as_double)
    if not off.any():
        return result, []
    # The float32 on the other side of the double, and the midpoint between the two.
    toward = np.where(doubles > as_double, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        other = np.nextafter(result, toward)
        midpoint = (as_double + other.astype(np.float64)) / 2.0
    suspicious = off & ((doubles == midpoint) | ~np.isfinite(result))
    needs_text = []
    for i in np.flatnonzero(suspicious):
        item = items[i]
        if isinstance(item, FloatText) or (isinstance(item, int) and not isinstance(item, bool)):
            result[i] = _round_exact_to_float32(_exact_value(item))
        else:
            needs_text.append(int(i))
    return result, needs_text


def float32_array_exact(items, field="data"):
    """float32_array for items that carry their text (FloatText): always exact."""
    result, needs_text = float32_array(items, field)
    if needs_text:
        raise ValueError(f"{field}[{needs_text[0]}]: a plain float on a float32 midpoint; read it as FloatText")
    return result


def _round_exact_to_float32(exact):
    """Rounds a rational to the nearest float32, ties to even (IEEE round-to-nearest)."""
    if exact == 0:
        return np.float32(0.0)
    magnitude = abs(exact)
    sign = -1.0 if exact < 0 else 1.0
    if magnitude >= _FLOAT32_OVERFLOW_MIDPOINT:
        # Exactly on the midpoint, ties-to-even goes up: FLT_MAX's last bit is odd.
        return np.float32(sign * np.inf)
    # Candidates: the double nearest below and its float32 neighbours bracket the value.
    approx = np.float32(float(magnitude))
    below = approx if Fraction(float(approx)) <= magnitude else np.nextafter(approx, np.float32(0))
    above = np.nextafter(below, np.float32(np.inf))
    low = Fraction(float(below))
    high = Fraction(2) ** 128 if np.isinf(above) else Fraction(float(above))
    if magnitude - low < high - magnitude:
        chosen = below
    elif magnitude - low > high - magnitude:
        chosen = above
    else:
        chosen = below if int(np.float32(below).view(np.uint32)) % 2 == 0 else above
    return np.float32(sign * float(chosen))


def float32_from_text(text):
    """One decimal (or "NaN", "Infinity", "-Infinity") to the nearest float32, rounded once."""
    if text in _SPECIAL:
        return np.float32(_SPECIAL[text])
    return float32_array_exact([FloatText(text)], field="value")[0]


def float32_text(value):
    """The shortest decimal that reads back as the same float32, spelled as C++17 std::to_chars does.

    That is moeref's own spelling, so a value written here reads back bit for bit in moeref,
    and a trace rewritten from moeref's values is byte-identical. NaN and infinities become
    the strings moeref uses (returned here without JSON quotes), and negative zero is "-0.0".
    """
    return float32_texts(np.array([value], dtype=np.float32))[0]


def float32_texts(array):
    """float32_text of every element of a float32 array (flattened), as a list of str."""
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    # numpy's repr of a float32 has the shortest round-trip digits (Dragon4); it only spells
    # some of them differently from std::to_chars, and those are redone one by one below.
    texts = flat.astype(str).tolist()
    respelled = {}  # numpy text -> moeref text; zeros and small integers repeat a lot
    for i, text in enumerate(texts):
        if text.endswith(".0") or "e" in text or "n" in text or text.startswith(("0.000", "-0.000")):
            if text not in respelled:
                respelled[text] = _to_chars_spelling(flat[i])
            texts[i] = respelled[text]
    return texts


def _to_chars_spelling(value):
    if np.isnan(value):
        return NAN_TEXT
    if np.isinf(value):
        return POSITIVE_INFINITY_TEXT if value > 0 else NEGATIVE_INFINITY_TEXT
    if value == 0:
        return "-0.0" if np.signbit(value) else "0"
    scientific = np.format_float_scientific(abs(value), unique=True, trim="-")
    mantissa, exponent_text = scientific.split("e")
    digits = mantissa.replace(".", "")
    exponent = int(exponent_text)
    if exponent >= len(digits) - 1:
        fixed = digits + "0" * (exponent - (len(digits) - 1))
    elif exponent >= 0:
        fixed = digits[: exponent + 1] + "." + digits[exponent + 1 :]
    else:
        fixed = "0." + "0" * (-exponent - 1) + digits
    sci = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + ("e-" if exponent < 0 else "e+")
    sci += f"{abs(exponent):02d}"
    # std::to_chars: the shorter of %f and %e, preferring %f on a tie.
    text = fixed if len(fixed) <= len(sci) else sci
    return ("-" if value < 0 else "") + text
