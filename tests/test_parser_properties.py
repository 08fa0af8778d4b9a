"""Properties of the transformation parser, with generated input (hypothesis).

- The canonical form is a fixed point: canonical(parse(canonical(t))) == canonical(t).
- Parameter order within a step never changes the canonical form.
- Any text at all either parses or is an `InvalidTransformation` (a 400): never another exception.
"""

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.errors import BadRequest, InvalidTransformation
from edge.transform import options
from edge.transform.expressions import BASE_VARIABLES, EXPRESSION_OPERATORS, EXPRESSION_VARIABLES
from edge.transform.colours import CSS_NAMES
from edge.transform.options import parse_transformation

NAMED = {"thumb": "w-200,h-200,c-at_max", "mini": "w-10:f-png,q-40"}

integers = st.integers(min_value=0, max_value=70000).map(str)
numbers = st.one_of(integers, st.floats(min_value=0, max_value=70000, allow_nan=False).map(lambda f: f"{f:.3f}"),
                    st.floats(min_value=0, max_value=1).map(lambda f: f"{f:.4f}"))
hex_colour = st.text("0123456789abcdefABCDEF", min_size=6, max_size=6)
colours = st.one_of(hex_colour, st.tuples(hex_colour, st.integers(0, 99)).map(lambda t: f"{t[0]}{t[1]:02d}"),
                  st.sampled_from(sorted(CSS_NAMES)))
booleans = st.sampled_from(["true", "false", "True"])
#: the variables of an expression outside a layer (`bw`, `bh`, `bar` are a layer's base)
OUTSIDE_LAYERS = [name for name in EXPRESSION_VARIABLES if name not in BASE_VARIABLES]

expressions = st.lists(st.one_of(st.sampled_from(OUTSIDE_LAYERS), numbers), min_size=1, max_size=4).flatmap(
    lambda values: st.lists(st.sampled_from(EXPRESSION_OPERATORS), min_size=len(values) - 1,
                            max_size=len(values) - 1).map(
        lambda operators: "_".join(v for pair in zip(values, [*operators, ""]) for v in pair if v)))

VALUES = {
    "w": st.one_of(numbers, expressions, st.just("auto")), "h": st.one_of(numbers, expressions),
    "ar": st.one_of(expressions, st.tuples(numbers, numbers).map("-".join), st.tuples(numbers, numbers).map("_".join), numbers),
    "dpr": st.sampled_from(["0.1", "0.5", "1", "1.5", "2", "5", "6", "auto"]),
    "c": st.sampled_from(options.CROPS),
    "cm": st.sampled_from(options.CROP_MODES),
    "fo": st.sampled_from(options.FOCUS),
    "x": integers, "y": integers, "xc": integers, "yc": integers,
    "z": st.sampled_from(["0.5", "1", "1.5", "2", "11"]),
    "t": st.one_of(st.just("true"), st.integers(0, 100).map(str)),
    "rt": st.one_of(st.sampled_from(["auto", "N90", "N180", "N270", "N12.5", "N450"]), st.integers(0, 800).map(str),
                    numbers),
    "fl": st.sampled_from(options.FLIPS + ("v_h",)),
    "bl": st.one_of(st.integers(0, 101).map(str), numbers),
    "e-grayscale": st.sampled_from(["", "true"]),
    "e-sharpen": st.one_of(st.just(""), st.integers(0, 101).map(str)),
    "e-contrast": st.one_of(st.just(""), st.integers(-1, 101).map(str)),
    "e-autocolor": st.one_of(st.sampled_from(["", "true"]), st.integers(-1, 101).map(str)),
    "e-autobrightness": st.one_of(st.just(""), st.integers(-1, 101).map(str)),
    "e-usm": st.one_of(st.sampled_from(["", "true"]),
                       st.tuples(numbers, numbers, numbers, st.sampled_from(["0", "0.024", "0.5"])).map("-".join)),
    "e-brightness": st.one_of(st.integers(-101, 101).map(lambda n: f"N{-n}" if n < 0 else str(n)), numbers),
    "e-saturation": st.integers(-101, 101).map(lambda n: f"N{-n}" if n < 0 else str(n)),
    "e-sepia": st.integers(0, 101).map(str),
    "e-negate": st.sampled_from(["", "true"]),
    "e-vibrance": st.integers(-101, 101).map(lambda n: f"N{-n}" if n < 0 else str(n)),
    "e-blackwhite": st.integers(-1, 101).map(str),
    "e-region": st.lists(st.integers(0, 70000).map(str), min_size=1, max_size=5).map("_".join),
    **{key: st.integers(-101, 101).map(lambda n: f"N{-n}" if n < 0 else str(n))
       for key in ("e-hue", "e-red", "e-green", "e-blue")},
    "e-pixelate": st.integers(0, 201).map(str),
    **{key: st.integers(-151, 151).map(lambda n: f"N{-n}" if n < 0 else str(n))
       for key in ("e-sigmoidcontrast", "e-gamma", "e-brightnesshsb")},
    "e-linearcontrast": st.integers(0, 201).map(str),
    "e-colorize": st.lists(st.one_of(colours.map("co-{}".format), st.integers(-1, 101).map("in-{}".format)),
                           max_size=2).map("_".join),
    "e-vignette": st.integers(-1, 101).map(str),
    "cr": st.lists(st.one_of(colours, st.integers(-1, 101).map(str)), min_size=1, max_size=3).map("_".join),
    "e-distort": st.one_of(
        st.integers(-361, 361).map(lambda n: f"a-N{-n}" if n < 0 else f"a-{n}"),
        st.lists(st.integers(-20, 120).map(lambda n: f"N{-n}" if n < 0 else str(n)), min_size=7, max_size=9).map(
            lambda values: "p-" + "_".join(values))),
    "e-opacitythreshold": st.integers(-1, 101).map(str),
    "e-blurfaces": st.one_of(st.integers(0, 101).map(str), numbers),
    "e-pixelatefaces": st.integers(0, 201).map(str),
    "r": st.one_of(st.just("max"), integers, st.lists(st.integers(0, 40).map(str), min_size=4, max_size=4).map("_".join)),
    "bg": st.one_of(colours, st.sampled_from(["dominant", "blurred", "blurred_auto", "blurred_25_N15", "blurred_5_40"])),
    "e-shadow": st.one_of(st.sampled_from(["", "true"]), st.fixed_dictionaries(
        {}, optional={"bl": st.integers(0, 16), "st": st.integers(0, 101), "x": st.sampled_from(["N10", "5", "0"]),
                      "y": st.sampled_from(["N3", "2.5"])}).map(lambda d: "_".join(f"{k}-{v}" for k, v in d.items()))),
    "e-gradient": st.one_of(st.sampled_from(["", "true"]), st.fixed_dictionaries(
        {}, optional={"ld": st.sampled_from(["top", "bottom_left", "45", "360"]), "from": colours, "to": colours,
                      "sp": st.one_of(st.sampled_from(["0.5", "1", "20", "0"]), expressions)}).map(
        lambda d: "_".join(f"{k}-{v}" for k, v in d.items()))),
    "pg": st.integers(0, 1001).map(str),
    "b": st.tuples(st.integers(0, 20).map(str), colours).map("_".join),
    "o": st.integers(0, 101).map(str),
    "f": st.sampled_from(options.FORMATS + ("jpeg",)),
    "q": st.integers(0, 101).map(str),
    "pr": booleans, "lo": booleans, "md": booleans, "cp": booleans,
    "di": st.lists(st.text(string.ascii_letters + "._-", min_size=1, max_size=6), min_size=1, max_size=3)
    .map("@@".join),
    "orig": booleans,
    "n": st.sampled_from(sorted(NAMED)),
}


def param(key: str, value: str) -> str:
    return f"{key}-{value}" if value else key


steps_as_dicts = st.lists(
    st.dictionaries(st.sampled_from(sorted(VALUES)), st.just(None), min_size=1, max_size=6)
    .flatmap(lambda keys: st.fixed_dictionaries({key: VALUES[key] for key in keys})),
    min_size=1, max_size=3)


def parse(text: str):
    return parse_transformation(text, named=NAMED)


def text_of(steps: list[dict[str, str]]) -> str:
    return ":".join(",".join(param(k, v) for k, v in step.items()) for step in steps)


@settings(max_examples=300, deadline=None)
@given(steps_as_dicts)
def test_canonical_form_is_a_fixed_point(steps):
    try:
        canonical = parse(text_of(steps)).canonical()
    except InvalidTransformation:
        assume(False)  # hypothesis fails the test when it has to discard too many examples
    assert parse(canonical).canonical() == canonical


@settings(max_examples=300, deadline=None)
@given(steps_as_dicts, st.randoms(use_true_random=False))
def test_parameter_order_within_a_step_does_not_matter(steps, random):
    shuffled = [dict(random.sample(list(step.items()), len(step))) for step in steps]
    try:
        canonical = parse(text_of(steps)).canonical()
    except InvalidTransformation:
        assume(False)
    assert parse(text_of(shuffled)).canonical() == canonical


comparisons = st.tuples(st.sampled_from(["w", "h", "ar", "iw", "ih", "iar"]),
                        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
                        st.one_of(st.integers(0, 5000).map(str), st.sampled_from(["1.5", "4-3", "16-9.0", "0-1"]))
                        ).map("_".join)
conditions = st.lists(st.tuples(comparisons, st.sampled_from(["and", "or"])), min_size=1, max_size=3).map(
    lambda parts: "_".join(f"{comparison}_{joiner}" for comparison, joiner in parts).rsplit("_", 1)[0])
if_blocks = st.tuples(conditions, steps_as_dicts.map(text_of), st.one_of(st.just(""), steps_as_dicts.map(text_of))
                      ).map(lambda block: f"if-{block[0]},{block[1]}" + (f",if-else,{block[2]}" if block[2] else "")
                            + ",if-end")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(if_blocks, steps_as_dicts.map(text_of)), min_size=1, max_size=3).map(":".join))
def test_if_blocks_parse_to_a_canonical_fixed_point_or_are_a_400(text):
    try:
        canonical = parse(text).canonical()
    except InvalidTransformation as error:
        assert error.status == 400 and error.message.startswith("invalid transformation: ")
        return
    assert parse(canonical).canonical() == canonical


ALPHABET = string.ascii_letters + string.digits + "-_,:.@%+ " + "éü💥\x00\t\n"


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(), st.text(ALPHABET), steps_as_dicts.map(text_of).map(lambda t: t.replace("-", "", 1))))
def test_any_text_parses_or_is_a_400(text):
    try:
        transformation = parse(text)
    except BadRequest as error:
        assert isinstance(error, InvalidTransformation) and error.status == 400
        assert error.message.startswith("invalid transformation: ")
        return
    assert parse(transformation.canonical()).canonical() == transformation.canonical()


@settings(max_examples=300, deadline=None)
@given(steps_as_dicts.map(text_of), st.text(ALPHABET, max_size=8), st.integers(0, 40))
def test_spliced_junk_parses_or_is_a_400(text, junk, position):
    spliced = text[:position] + junk + text[position:]
    try:
        parse(spliced)
    except InvalidTransformation:
        pass
