"""Public versus hidden data: the track schema's ``hidden`` flag and ``python -m harness
export-public``, the bundle teams receive."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from harness.definitions.data import sha256_file, write_contest_file
from harness.definitions.export import export_public
from harness.definitions.tracks import Track, load_benchmark, load_bundle
from harness.errors import BenchmarkError
from tests.conftest import REPO, benchmark_subset, run_harness

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
RETUNING = '[retuning]\nfile = "r.h5"\n'


def bench(root: Path, validation: str = "", test: str = TEST, poisoned: str = POISONED,
          meta: str = "") -> Path:
    (root / "tracks").mkdir(parents=True)
    (root / "tracks" / "t.toml").write_text(TRACK.format(validation=validation, test=test,
                                                         poisoned=poisoned))
    (root / "benchmark.toml").write_text(meta)
    return root


def test_defaults_validation_public_test_poisoned_and_retuning_hidden(tmp_path):
    track = load_bundle(bench(tmp_path, poisoned=POISONED + RETUNING)).track("t")
    assert not track.validation.hidden and track.test.hidden and track.poisoned[0].file.hidden
    assert track.retuning.hidden
    shown = load_bundle(bench(tmp_path / "b", poisoned=POISONED + "hidden = false\n"))
    assert not shown.track("t").poisoned[0].file.hidden and not shown.public


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"validation": "hidden = true"}, "[validation] cannot be hidden"),
    ({"test": TEST + 'hidden = "yes"\n'}, "'hidden' must be true or false"),
    ({"meta": 'public = "yes"'}, "'public' must be true or false"),
    ({"meta": "public = true"},
     "[test], poisoned[0] hidden (the default for test, poisoned and retuning sets)"),
    ({"meta": "public = true", "test": "", "poisoned": POISONED + "hidden = true\n"},
     "poisoned[0] hidden"),
    ({"meta": "public = true", "test": "", "poisoned": RETUNING},
     "[retuning] hidden (the default for test, poisoned and retuning sets) in a public bundle"),
    ({"meta": "public = true", "test": "", "poisoned": RETUNING + "hidden = true\n"},
     "[retuning] hidden"),
])
def test_bad_visibility_fails_naming_the_file(tmp_path, kwargs, message):
    with pytest.raises(BenchmarkError) as info:
        load_bundle(bench(tmp_path, **kwargs))
    assert message in str(info.value) and ".toml: " in str(info.value)
    assert "\n" not in str(info.value)


def test_public_bundle_tracks_may_omit_test_and_poisoned_sets(tmp_path):
    public = load_bundle(bench(tmp_path, test="", poisoned="", meta="public = true"))
    track = public.track("t")
    assert public.public and track.test is None and track.poisoned == ()
    assert track.data_files() == [track.validation]
    with pytest.raises(BenchmarkError, match="at least one"):
        load_bundle(bench(tmp_path / "full", test="", poisoned=""))
    shown = load_bundle(bench(tmp_path / "shown", test="", poisoned=RETUNING + "hidden = false",
                              meta="public = true")).track("t")
    assert not shown.retuning.hidden and shown.data_files() == [shown.validation, shown.retuning]


def test_only_a_benchmark_to_grade_on_loads_as_tracks_with_their_test_sets(tmp_path):
    """Grading code takes ``Track``s, whose ``test`` is never None: a bundle cannot reach it."""
    graded = load_benchmark(bench(tmp_path / "full"))
    assert all(isinstance(track, Track) and track.test is not None for track in graded.tracks)
    bundle = bench(tmp_path / "bundle", test="", poisoned="", meta="public = true")
    assert not isinstance(load_bundle(bundle).track("t"), Track)
    with pytest.raises(BenchmarkError, match="a public bundle has no hidden test sets to grade on"):
        load_benchmark(bundle)


def test_a_file_hidden_in_one_track_and_public_in_another_is_refused(tmp_path):
    root = bench(tmp_path)
    (root / "tracks" / "u.toml").write_text(TRACK.replace('"t"', '"u"').format(
        validation="", test=TEST + "hidden = false\n", poisoned=POISONED))
    with pytest.raises(BenchmarkError, match="test.h5: hidden in .*t.toml but public in .*u.toml"):
        load_bundle(root)


@pytest.mark.parametrize("folder", ["data", "benchmarks/csaw-hackml-2020"])
def test_shipped_track_files_mark_every_set_explicitly(folder):
    for path in sorted((REPO / folder / "tracks").glob("*.toml")):
        spec = tomllib.loads(path.read_text())
        assert spec["validation"]["hidden"] is False, path
        assert spec["test"]["hidden"] is True, path
        assert all(p["hidden"] is True for p in spec["poisoned"]), path
        assert spec.get("retuning", {"hidden": True})["hidden"] is True, path


@pytest.fixture(scope="module")
def exported(tiny_benchmark_probed: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two tracks of the tiny benchmark, the sunglasses poisoned set made public, exported."""
    root = tmp_path_factory.mktemp("export")
    source = benchmark_subset(tiny_benchmark_probed, root / "source",
                              ["anonymous_1", "sunglasses"])
    track_file = source / "tracks" / "sunglasses.toml"
    spec = tomllib.loads(track_file.read_text())
    spec["poisoned"][0]["hidden"] = False
    track_file.write_text(tomli_w.dumps(spec))
    (root / "bundle").mkdir()  # an existing empty folder is accepted
    result = run_harness("export-public", root / "bundle", "--benchmark", source, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return load_bundle(source), root / "bundle", result


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


def test_bundle_leaves_out_the_clean_model_and_the_retuning_sets(exported):
    """The retuning probe's yardstick is a model that never saw a trigger (what teams must
    produce), and the retuning sets carry the trigger: neither is copied nor named."""
    source, bundle, _ = exported
    clean = {t.clean_model for t in source.tracks}
    assert len(clean) == 1 and all(t.retuning and t.retuning.hidden for t in source.tracks)
    [clean_model] = clean
    assert clean_model.is_file()
    clean_sha = sha256_file(clean_model).encode()
    for path in bundle.rglob("*"):
        if path.is_file():
            assert path.name != clean_model.name
            assert path.read_bytes() != clean_model.read_bytes()
            assert clean_sha not in path.read_bytes()
    for path in (bundle / "tracks").glob("*.toml"):
        text = path.read_text()
        assert "clean_model" not in text and clean_model.name not in text
        assert "retuning" not in text and "retuning" not in tomllib.loads(text)
    assert all(t.retuning is None and t.clean_model is None for t in load_bundle(bundle).tracks)


def _tiny_bench(root: Path, retuning: str, clean_model: str = "models/clean.h5") -> Path:
    """A one-track benchmark with real (tiny) data files, for export without a build."""
    rng = np.random.default_rng(1)
    for name in ("val", "test", "p", "r"):
        write_contest_file(root / f"{name}.h5", rng.integers(0, 256, (4, 55, 47, 3), np.uint8),
                           np.array([0, 1, 2, 1]))
    for model in ("bd.h5", "models/clean.h5"):
        (root / model).parent.mkdir(parents=True, exist_ok=True)
        (root / model).write_bytes(model.encode() * 10)
    bench(root, poisoned=POISONED + retuning)
    track_file = root / "tracks" / "t.toml"
    track_file.write_text(f"clean_model = {clean_model!r}\n" + track_file.read_text())
    return root


def test_export_writes_a_public_retuning_set_and_never_the_clean_model(tmp_path):
    source = load_bundle(_tiny_bench(tmp_path / "src", RETUNING + "hidden = false\n"))
    files = export_public(source, tmp_path / "out")
    assert "data/r.h5" in files and "data/p.h5" not in files
    assert not any("clean" in name for name in files)
    shown = load_bundle(tmp_path / "out").track("t")
    assert shown.retuning.sha256 == sha256_file(tmp_path / "src" / "r.h5")
    assert not shown.retuning.hidden and shown.clean_model is None
    assert "data/r.h5" in (tmp_path / "out" / "README.md").read_text()
    hidden = load_bundle(_tiny_bench(tmp_path / "src2", RETUNING))
    assert "data/r.h5" not in export_public(hidden, tmp_path / "out2")


def test_export_refuses_a_clean_model_that_is_another_tracks_badnet(tmp_path):
    root = _tiny_bench(tmp_path / "src", RETUNING)
    track = (root / "tracks" / "t.toml").read_text()
    (root / "tracks" / "u.toml").write_text(
        track.replace("clean_model = 'models/clean.h5'\n", "")
        .replace('name = "t"', 'name = "u"').replace('"bd.h5"', '"models/clean.h5"'))
    source = load_bundle(root)
    assert source.track("u").badnet == source.track("t").clean_model
    with pytest.raises(BenchmarkError, match="is both a BadNet and a clean model"):
        export_public(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_clean_tracks_own_model_goes_out_as_its_badnet_and_nothing_else(tmp_path):
    """A clean track (its BadNet never saw a trigger) is its own yardstick: the model is public
    as the track's BadNet, and the bundle names no clean model."""
    source = load_bundle(_tiny_bench(tmp_path / "src", RETUNING, clean_model="bd.h5"))
    files = export_public(source, tmp_path / "out")
    assert "models/bd.h5" in files and not any("clean" in name for name in files)
    assert load_bundle(tmp_path / "out").track("t").clean_model is None


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
    public = load_bundle(bundle)
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
