"""Public versus hidden data: the track schema's ``hidden`` flag and ``python -m harness
export-public``, the bundle teams receive."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import REPO, benchmark_subset, run_harness

from harness.errors import BenchmarkError
from harness.tracks import load_benchmark

TRACK = """
name = "t"
badnet = "bd.h5"
input_scale = 1
num_classes = 3
[validation]
file = "val.h5"
{validation}
{test}
{poisoned}
"""
TEST = '[test]\nfile = "test.h5"\n'
POISONED = '[[poisoned]]\ntrigger = "sunglasses"\ntarget = 0\nfile = "p.h5"\n'


def bench(root: Path, validation: str = "", test: str = TEST, poisoned: str = POISONED,
          meta: str = "") -> Path:
    (root / "tracks").mkdir(parents=True)
    (root / "tracks" / "t.toml").write_text(TRACK.format(validation=validation, test=test,
                                                         poisoned=poisoned))
    (root / "benchmark.toml").write_text(meta)
    return root


def test_defaults_validation_public_test_and_poisoned_hidden(tmp_path):
    track = load_benchmark(bench(tmp_path)).track("t")
    assert not track.validation.hidden and track.test.hidden and track.poisoned[0].file.hidden
    shown = load_benchmark(bench(tmp_path / "b", poisoned=POISONED + "hidden = false\n"))
    assert not shown.track("t").poisoned[0].file.hidden and not shown.public


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"validation": "hidden = true"}, "[validation] cannot be hidden"),
    ({"test": TEST + 'hidden = "yes"\n'}, "'hidden' must be true or false"),
    ({"meta": 'public = "yes"'}, "'public' must be true or false"),
    ({"meta": "public = true"}, "[test], poisoned[0] hidden (the default for test and poisoned"),
    ({"meta": "public = true", "test": "", "poisoned": POISONED + "hidden = true\n"},
     "poisoned[0] hidden"),
])
def test_bad_visibility_fails_naming_the_file(tmp_path, kwargs, message):
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(bench(tmp_path, **kwargs))
    assert message in str(info.value)


def test_public_bundle_tracks_may_omit_test_and_poisoned_sets(tmp_path):
    public = load_benchmark(bench(tmp_path, test="", poisoned="", meta="public = true"))
    track = public.track("t")
    assert public.public and track.test is None and track.poisoned == ()
    assert track.data_files() == [track.validation]
    with pytest.raises(BenchmarkError, match="at least one"):
        load_benchmark(bench(tmp_path / "full", test="", poisoned=""))


def test_a_file_hidden_in_one_track_and_public_in_another_is_refused(tmp_path):
    root = bench(tmp_path)
    (root / "tracks" / "u.toml").write_text(TRACK.replace('"t"', '"u"').format(
        validation="", test=TEST + "hidden = false\n", poisoned=POISONED))
    with pytest.raises(BenchmarkError, match="test.h5: hidden in .*t.toml but public in .*u.toml"):
        load_benchmark(root)


@pytest.mark.parametrize("folder", ["data", "benchmarks/csaw-hackml-2020"])
def test_shipped_track_files_mark_every_set_explicitly(folder):
    for path in sorted((REPO / folder / "tracks").glob("*.toml")):
        spec = tomllib.loads(path.read_text())
        assert spec["validation"]["hidden"] is False, path
        assert spec["test"]["hidden"] is True, path
        assert all(p["hidden"] is True for p in spec["poisoned"]), path


@pytest.fixture(scope="module")
def exported(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two tracks of the tiny benchmark, the sunglasses poisoned set made public, exported."""
    root = tmp_path_factory.mktemp("export")
    source = benchmark_subset(tiny_benchmark, root / "source", ["anonymous_1", "sunglasses"])
    track_file = source / "tracks" / "sunglasses.toml"
    text = track_file.read_text()
    cut = text.rindex("hidden = true")  # the last table is the [[poisoned]] set
    track_file.write_text(text[:cut] + "hidden = false" + text[cut + len("hidden = true"):])
    (root / "bundle").mkdir()  # an existing empty folder is accepted
    result = run_harness("export-public", root / "bundle", "--benchmark", source, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return load_benchmark(source), root / "bundle", result


def test_bundle_holds_the_public_files_byte_identical(exported):
    source, bundle, result = exported
    public = {f.path for f in source.data_files() if not f.hidden}
    public |= {t.badnet for t in source.tracks}
    copied = {p.name: p for p in bundle.rglob("*") if p.is_file()}
    for path in public:
        assert copied[path.name].read_bytes() == path.read_bytes(), path.name
        assert path.name in result.stdout
    assert {p.suffix for p in copied.values()} == {".h5", ".toml", ".md", ".txt"}
    # The environments entries may declare are public: teams check their entries in them.
    assert (bundle / "environments" / "keras2.txt").read_bytes() == \
        (source.root / "environments" / "keras2.txt").read_bytes()
    assert "environments/keras2.txt" in result.stdout


def test_bundle_has_no_hidden_file_name_or_hash_anywhere(exported):
    source, bundle, _ = exported
    hidden = [f for f in source.data_files() if f.hidden]
    assert hidden and all(f.sha256 for f in hidden)
    needles = [needle.encode() for f in hidden for needle in (f.path.name, f.sha256)]
    for path in bundle.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(needle in content for needle in needles), path
            assert path.name not in {f.path.name for f in hidden}


def test_bundle_tells_teams_the_public_description_only(exported):
    """How a backdoor was built ("into channels clean faces leave dormant") is a hint at which
    defense works: it stays in the organizers' track files, out of every file of the bundle."""
    source, bundle, _ = exported
    internal = [t.description for t in source.tracks]
    assert any("dormant" in text for text in internal)
    text = "".join(p.read_text() for p in bundle.rglob("*") if p.suffix in (".toml", ".md"))
    for description in internal:
        assert description not in text
    for track in source.tracks:
        assert track.public_description in text


def test_bundle_loads_as_a_public_benchmark(exported):
    source, bundle, _ = exported
    public = load_benchmark(bundle)
    assert public.public and public.name == source.name and public.generate is None
    assert [t.name for t in public.tracks] == [t.name for t in source.tracks]
    for theirs, ours in zip(source.tracks, public.tracks, strict=True):
        assert ours.test is None
        assert (ours.num_classes, ours.input_scale, ours.public_description) == \
            (theirs.num_classes, theirs.input_scale, theirs.public_description)
        assert theirs.public_description and ours.description == ""
        assert ours.validation.sha256 == theirs.validation.sha256
        assert ours.validation.path == (bundle / "data" / theirs.validation.path.name).resolve()
        assert ours.badnet == (bundle / "models" / theirs.badnet.name).resolve()
    [shown] = public.track("sunglasses").poisoned
    assert (shown.trigger, shown.target, shown.file.hidden) == ("sunglasses", 0, False)
    assert public.track("anonymous_1").poisoned == ()
    readme = (bundle / "README.md").read_text()
    assert "harness check" in readme and "data/clean_validation_data.h5" in readme


def test_export_refuses_a_non_empty_folder_and_grade_refuses_a_bundle(exported, tmp_path):
    source, bundle, _ = exported
    (tmp_path / "keep.txt").write_text("mine")
    refused = run_harness("export-public", tmp_path, "--benchmark", source.root, cwd=tmp_path)
    assert refused.returncode == 2 and "is not an empty folder" in refused.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    (tmp_path / "subs" / "a").mkdir(parents=True)
    (tmp_path / "subs" / "a" / "submission.toml").write_text('team = "a"\n')
    graded = run_harness("grade", "subs", "--benchmark", bundle, cwd=tmp_path)
    assert graded.returncode == 2 and "a public bundle has no hidden test sets" in \
        graded.stdout + graded.stderr
