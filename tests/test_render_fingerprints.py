"""No change of what a URL renders to lands without a new RENDER_VERSION (edge/cache/keys.py): the corpus of
tests/render_fingerprints.py (every parameter family of docs/transformations.md, the config's `[defaults]`,
an endpoint's watermark, 12 MP photos) rendered by real nodes on real sockets (the URL's parsing, named
transformations, the layers' fetches, `Accept` and client hints all decide a render) and compared with
tests/render_fingerprints.json. The fingerprint, its tolerance and the noise it was measured against are
described in tests/render_fingerprints.py."""

import base64

from edge.cache.keys import RENDER_VERSION
from tests.render_fingerprints import CORPUS, TOLERANCE, UPDATE_COMMAND, cases, difference, inputs_of, load, \
    merged, render_corpus


async def test_no_render_changes_without_a_new_render_version(tmp_path):
    recorded = load()
    assert recorded["render_version"] == RENDER_VERSION, \
        f"RENDER_VERSION is {RENDER_VERSION}, the fingerprints are of {recorded['render_version']}: {UPDATE_COMMAND}"
    made, inputs = await render_corpus(tmp_path)
    unrecorded = sorted(set(made) - set(recorded["renders"]))
    assert not unrecorded, f"renders not recorded: {unrecorded}; record them with {UPDATE_COMMAND}"
    assert set(recorded["renders"]) <= {case.name for case in CORPUS}, f"URLs left the corpus: {UPDATE_COMMAND}"
    remarked = sorted(name for name, fingerprint in made.items()
                      if recorded["renders"][name].get("marks", "") != fingerprint["marks"])
    assert not remarked, f"a parameter's revision changed, these renders are not recorded for it: {remarked}; " \
        f"record them with {UPDATE_COMMAND}"
    changed = {name: why for name, fingerprint in made.items()
               if (why := difference(recorded["renders"][name], fingerprint))}
    inputs_changed = sorted(name for name, digest in inputs.items() if recorded["inputs"].get(name) != digest)
    assert not changed, (
        "renders changed: " + "; ".join(f"{name} ({why})" for name, why in changed.items())
        + ". If intended, raise RENDER_VERSION in edge/cache/keys.py (or, for one parameter's change, its revision"
        + f" in REVISED_PARAMETERS there) and regenerate with {UPDATE_COMMAND}"
        + (f" (input files changed too: {inputs_changed}; their renders are re-recorded without a new version)"
           if inputs_changed else ""))


def test_regenerating_refuses_a_changed_render_under_the_same_render_version():
    """The guard cannot be silenced without a version bump: a render beyond the tolerance is refused
    under the recorded version, recorded under a new one, under new revision marks of its URL or when an
    input it reads changed; one within the tolerance keeps the recorded fingerprint (small changes cannot
    add up)."""
    recorded = load()
    [case] = [case for case in cases() if case.name == "shipped /tr:w-200/coffee.jpg"]
    changed = dict(recorded["renders"], **{case.name: _moved(recorded["renders"][case.name], TOLERANCE + 1)})

    renders, refused = merged(recorded, changed, recorded["inputs"])
    assert [line.split(": ")[0] for line in refused] == [case.name]

    renders, refused = merged(dict(recorded, render_version="r0"), changed, recorded["inputs"])
    assert not refused and renders[case.name] == changed[case.name]

    remarked = dict(changed, **{case.name: dict(changed[case.name], marks="w2")})
    renders, refused = merged(recorded, remarked, recorded["inputs"])
    assert not refused and renders[case.name] == remarked[case.name]

    [input_name] = inputs_of(case, recorded["inputs"])
    renders, refused = merged(recorded, changed, dict(recorded["inputs"], **{input_name: "another digest"}))
    assert not refused and renders[case.name] == changed[case.name]

    within = dict(recorded["renders"], **{case.name: _moved(recorded["renders"][case.name], TOLERANCE)})
    renders, refused = merged(recorded, within, recorded["inputs"])
    assert not refused and renders == recorded["renders"]


def _moved(fingerprint: dict, levels: int) -> dict:
    """`fingerprint` with its first value moved by `levels`, towards mid-grey (within 0-255)."""
    pixels = bytearray(base64.b64decode(fingerprint["pixels"]))
    pixels[0] += levels if pixels[0] < 128 else -levels
    return dict(fingerprint, pixels=base64.b64encode(pixels).decode())
