"""Hostile archives and damaged records (issue 21, "trust boundaries"): `rs-repro import` writes only inside
the build folder, reads nothing it has not checked, and nothing from an archive reaches a page as markup."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from conftest import in_run
from markdown_it import MarkdownIt

from rs_repro.claims import kernel, paper, scorecard
from rs_repro.pipeline import context, paths, provenance, publish
from rs_repro.report import markup, measurements
from rs_repro.report.measurements import BisectionSpread, ThresholdCheck

SPREAD = BisectionSpread("digits", 0, 0.25, {10: 0.3, 100: 0.1}, {10: [0.3, 0.31, 0.29], 100: [0.1, 0.11, 0.09]})
THEORY = ThresholdCheck(0.8, {5: 0.8})
#: The stamp of the machine that exported, valid in every field.
STAMP = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False,
         "machine": {"host": "gpu-1", "system": "Linux", "processor": "x86_64", "cores": 16,
                     "accelerator": "NVIDIA H200 (x1)"},
         "versions": {"python": "3.12.0", "torch": "2.4.0"}, "time": "2026-12-02T08:00:00+00:00"}
#: Markup that would run script or break a table if shown as it is.
HOSTILE = "<img src=x onerror=alert(1)>|**x**"


@pytest.fixture
def laptop(tmp_path, monkeypatch) -> Path:
    """A machine of its own under ``tmp_path/laptop`` (build folder ``laptop/build``), with a sentinel folder
    beside it that no import may touch; returns the build folder."""
    root = tmp_path / "laptop"
    monkeypatch.setattr(paths, "ROOT", root)
    monkeypatch.setattr(paths, "BUILD", root / "build")
    monkeypatch.setattr(paths, "CHAPTERS", root / "book" / "chapters")
    monkeypatch.setattr(provenance, "stamp", lambda: json.loads(json.dumps(STAMP)))
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / ".bashrc").write_text("untouched\n")
    return paths.BUILD


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (symbolic links as their target)."""
    return {str(p.relative_to(folder)): (str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def _record(stem: str = "theory", profile: str = "imagenet", provenance: object = None, values: object = None) -> bytes:
    """A measurement file as :func:`rs_repro.report.measurements.record` writes it."""
    values = dataclasses.asdict(THEORY) if values is None else values
    return json.dumps({"stem": stem, "profile": profile, "created": 1.0,
                       "provenance": STAMP if provenance is None else provenance, "values": values}).encode()


def _manifest(members: dict[str, bytes], **changes: object) -> bytes:
    """The manifest of ``members``, with ``changes`` to its keys."""
    manifest = {"format": publish.FORMAT, "profile": "imagenet", "exported": STAMP,
                "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                          for name, data in members.items()}}
    return json.dumps({**manifest, **changes}).encode()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


def _tar(path: Path, members: list[tuple[str, bytes] | tarfile.TarInfo]) -> Path:
    """A .tar.gz holding ``members``: (name, data) pairs as plain files, TarInfo as they are (no data)."""
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                tar.addfile(_info(member[0], len(member[1])), io.BytesIO(member[1]))
    return path


def _archive(path: Path, files: dict[str, bytes] | None = None, manifest: bytes | None = None,
             extra: list[tuple[str, bytes] | tarfile.TarInfo] = ()) -> Path:
    """A crafted archive: ``files`` (a record and a figure by default) with their manifest (or ``manifest``),
    and ``extra`` members the manifest does not know."""
    files = {"measurements/theory.json": _record(), "figures/theory.png": b"png"} if files is None else files
    return _tar(path, [(publish.MANIFEST, _manifest(files) if manifest is None else manifest), *files.items(),
                       *extra])


def _refused(archive: Path, match: str, tmp_path: Path) -> str:
    """Import ``archive``, assert an :class:`ArchiveError` naming it and matching ``match``, and that nothing
    under ``tmp_path`` changed (the build folder, the sentinel beside it, every measurement file)."""
    before = _files(tmp_path)
    with pytest.raises(publish.ArchiveError, match=match) as caught:
        publish.import_archive(archive)
    message = str(caught.value)
    assert archive.name in message and "\n" not in message
    assert _files(tmp_path) == before
    return message


def test_a_crafted_archive_of_the_right_shape_is_imported(laptop, tmp_path):
    manifest = publish.import_archive(_archive(tmp_path / "good.tar.gz"))
    assert measurements.load("theory", "imagenet") == THEORY
    assert (publish.published_dir("imagenet") / "figures" / "theory.png").read_bytes() == b"png"
    assert manifest["archive"] == "good.tar.gz" and publish.imported("imagenet")["profile"] == "imagenet"
    assert (tmp_path / "outside" / ".bashrc").read_text() == "untouched\n"


def test_export_then_import_round_trip_and_the_summary_line(laptop, tmp_path, monkeypatch):
    in_run(monkeypatch, profile="imagenet")
    measurements.record("fig3_binary_search", SPREAD)
    archive = publish.export("imagenet", tmp_path / "imagenet.tar.gz")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "other" / "build")
    manifest = publish.import_archive(archive)
    assert manifest["format"] == 2 and set(manifest["files"]["measurements/fig3_binary_search.json"]) == {
        "sha256", "size"}
    assert measurements.load("fig3_binary_search", "imagenet") == SPREAD
    assert publish.summary(manifest) == (
        "imagenet: 1 files computed on gpu-1 (NVIDIA H200 (x1)) at commit 0123456789, exported "
        "2026-12-02T08:00:00+00:00; now run `make chapter CH=claims` to show its column")
    hostile = json.loads(json.dumps(manifest))
    hostile["exported"]["machine"]["host"] = "a\x1b[2Jb\nc"
    assert "\x1b" not in publish.summary(hostile) and "\n" not in publish.summary(hostile)


@pytest.mark.parametrize("profile", ["/tmp/evil", "../../..", "../../../outside", "imagenet/../../x", "nope",
                                     "", None, 3, ["imagenet"]])
def test_a_profile_outside_the_known_ones_is_refused(laptop, tmp_path, profile):
    files = {"measurements/theory.json": _record(profile=profile if isinstance(profile, str) else "x")}
    archive = _archive(tmp_path / "profile.tar.gz", files, _manifest(files, profile=profile))
    _refused(archive, r"profile=.* is not accepted; expected one of: smoke, default, fashion, imagenet, paper",
             tmp_path)


@pytest.mark.parametrize(("name", "match"), [
    ("../outside/.bashrc", "not a plain relative file"),
    ("/tmp/evil.json", "not a plain relative file"),
    ("figures/../../outside/x", "not a plain relative file"),
    ("measurements/evil.json", "member='measurements/evil.json' is not accepted"),
    ("measurements/theory.txt", "is not accepted; expected measurements/<chapter>.json"),
    ("pages/theory.md", "is not accepted"),
    ("figures/a b.png", "is not accepted"),
    ("figures/.hidden", "is not accepted"),
    ("figures/sub/x.png", "is not accepted"),
    ("tables/fig4/../x.tsv", "not a plain relative file"),
    ("other/x", "is not accepted"),
    ("figures/<script>.png", "is not accepted"),
])
def test_a_member_name_outside_the_layout_is_refused(laptop, tmp_path, name, match):
    files = {"measurements/theory.json": _record(), name: b"x"}
    _refused(_archive(tmp_path / "names.tar.gz", files), match, tmp_path)


@pytest.mark.parametrize("member", [
    _info("figures/link.png", kind=tarfile.SYMTYPE, link="../../outside/.bashrc"),
    _info("figures/hard.png", kind=tarfile.LNKTYPE, link="measurements/theory.json"),
    _info("figures/dev.png", kind=tarfile.CHRTYPE),
    _info("figures/fifo.png", kind=tarfile.FIFOTYPE),
    _info("figures/dir", kind=tarfile.DIRTYPE),
])
def test_links_devices_and_folders_are_refused(laptop, tmp_path, member):
    _refused(_archive(tmp_path / "links.tar.gz", extra=[member]), "which is not a plain relative file", tmp_path)


def test_a_member_twice_is_refused(laptop, tmp_path):
    archive = _archive(tmp_path / "twice.tar.gz", extra=[("figures/theory.png", b"png")])
    _refused(archive, "holds figures/theory.png twice", tmp_path)


def test_a_target_folder_that_links_outside_the_build_is_refused(laptop, tmp_path):
    outside = tmp_path / "outside"
    (laptop / "results" / "theory").mkdir(parents=True)
    (laptop / "results" / "theory" / "measurements").symlink_to(outside, target_is_directory=True)
    message = _refused(_archive(tmp_path / "linked.tar.gz"), "is not accepted; expected a file inside", tmp_path)
    assert str(outside) in message
    assert _files(outside) == {".bashrc": b"untouched\n"}


def test_inside_and_check_profile():
    root = Path("/srv/project/build")
    assert publish.inside(root / "results" / "x.json", [root]) == root / "results" / "x.json"
    for path in (root / ".." / "x", Path("/etc/passwd"), root):
        with pytest.raises(ValueError, match="is not accepted; expected a file inside /srv/project/build"):
            publish.inside(path, [root])
    assert publish.check_profile("paper") == "paper"
    with pytest.raises(ValueError, match=r"profile='\.\./x' is not accepted"):
        publish.check_profile("../x")


#: Values refused in every string field of a stamp: markup is accepted there (and escaped where shown), these
#: are not.
BAD_TEXT = ["a\x1b[2Jb", "line\nbreak", "tab\there", "x" * 201, 7, None, ["host"], {"a": 1}, True]


def _stamp_with(path: tuple[str, ...], value: object) -> dict:
    stamp = json.loads(json.dumps(STAMP))
    holder = stamp
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return stamp


FIELDS = [("machine", "host"), ("machine", "accelerator"), ("machine", "system"), ("machine", "processor"),
          ("versions", "torch"), ("time",)]


@pytest.mark.parametrize("field", FIELDS, ids=".".join)
@pytest.mark.parametrize("value", BAD_TEXT, ids=range(len(BAD_TEXT)))
def test_a_bad_string_in_the_exported_stamp_is_refused(laptop, tmp_path, field, value):
    files = {"measurements/theory.json": _record()}
    archive = _archive(tmp_path / "stamp.tar.gz", files, _manifest(files, exported=_stamp_with(field, value)))
    _refused(archive, rf"exported\.{'.'.join(field)}=.* is not accepted; expected", tmp_path)


@pytest.mark.parametrize("field", FIELDS, ids=".".join)
def test_a_bad_string_in_a_records_provenance_is_refused(laptop, tmp_path, field):
    files = {"measurements/theory.json": _record(provenance=_stamp_with(field, "bad\x07bell"))}
    _refused(_archive(tmp_path / "record.tar.gz", files),
             rf"measurements/theory\.json\.provenance\.{'.'.join(field)}=.* is not accepted", tmp_path)


@pytest.mark.parametrize(("field", "value", "match"), [
    (("commit",), HOSTILE, "exported.commit=.* is not accepted; expected a git commit"),
    (("commit",), "0" * 41, "exported.commit"),
    (("dirty",), "no", "exported.dirty='no' is not accepted; expected true or false"),
    (("machine", "cores"), "16", "exported.machine.cores='16' is not accepted"),
    (("machine", "cores"), True, "exported.machine.cores=True is not accepted"),
    (("machine", "script"), "x", "exported.machine=.* is not accepted; expected an object with keys"),
    (("versions",), ["torch"], "exported.versions=.* is not accepted"),
    (("versions", "x" * 300), "1", "exported.versions key=.* is not accepted"),
    (("time",), "yesterday", "exported.time='yesterday' is not accepted; expected an ISO 8601 time"),
    (("extra",), 1, "exported=.* is not accepted; expected an object with keys"),
])
def test_a_stamp_of_another_shape_is_refused(laptop, tmp_path, field, value, match):
    files = {"measurements/theory.json": _record()}
    archive = _archive(tmp_path / "stamp.tar.gz", files, _manifest(files, exported=_stamp_with(field, value)))
    _refused(archive, match, tmp_path)


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row, split at the ``|`` that are not escaped."""
    return re.split(r"(?<!\\)\|", row)[1:-1]


def test_markup_in_every_provenance_field_is_shown_as_text(laptop, tmp_path):
    stamp = _stamp_with(("machine", "host"), HOSTILE)
    stamp["machine"]["accelerator"] = "`code` [link](javascript:alert(1)) $x$ {{ sub }} &lt;b&gt;"
    stamp["time"] = "2026-12-02T08:00:00+00:00"
    files = {"measurements/theory.json": _record(provenance=stamp)}
    publish.import_archive(_archive(tmp_path / "<img src=x onerror=alert(2)>|.tar.gz", files,
                                    _manifest(files, exported=stamp)))
    table = scorecard.provenance_markdown(["imagenet"])
    row = table.splitlines()[2]
    assert "<img" not in row and "**x**" not in row and len(_cells(row)) == 6
    html = MarkdownIt("commonmark").enable("table").render(table)
    assert "<img" not in html and "<strong>" not in html and "<a " not in html and "<code>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;|**x**" in html  # the host, shown as it is
    assert "&lt;img src=x onerror=alert(2)&gt;|.tar.gz" in html  # the archive's name
    assert html.count("<td>") == 6


def test_markup_helpers():
    assert markup.markdown_cell("a|b*c_d\ne") == "a\\|b\\*c\\_d e"
    assert markup.markdown_cell("<a&b>") == "&lt;a&amp;b&gt;"
    assert markup.markdown_code("results.tar.gz") == "`results.tar.gz`"
    assert markup.markdown_code("a`b|c") == "a\\`b\\|c"
    assert markup.html_text('<b a="1">&\x00') == "&lt;b a=&quot;1&quot;&gt;&amp; "
    html = MarkdownIt("commonmark").render(markup.markdown_cell(HOSTILE + " \\*\\ {role}`x` ~~s~~"))
    assert html == "<p>&lt;img src=x onerror=alert(1)&gt;|**x** \\*\\ {role}`x` ~~s~~</p>\n"


def test_a_declared_huge_member_is_refused_from_its_header(laptop, tmp_path):
    """A header that claims 2 GiB, with no data behind it: refused before anything is read."""
    raw = _info("figures/huge.png", 2 * 2**30).tobuf(tarfile.GNU_FORMAT)
    archive = tmp_path / "huge.tar.gz"
    archive.write_bytes(gzip.compress(raw + bytes(1024)))
    tracemalloc.start()
    try:
        _refused(archive, "figures/huge.png declares 2147483648 bytes; accepted: 268435456 bytes a member", tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_a_huge_long_name_or_pax_header_is_refused_without_reading_it(laptop, tmp_path, kind):
    """tarfile reads such a header's data in one piece: a header declaring 300 MiB is refused before."""
    archive = tmp_path / "header.tar.gz"
    header = _info("././@LongLink", 300 * 2**20, kind=kind).tobuf(tarfile.GNU_FORMAT)
    archive.write_bytes(gzip.compress(header + bytes(2**20)))
    tracemalloc.start()
    try:
        _refused(archive, "it holds a header of more than 1048576 bytes", tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    finally:
        tracemalloc.stop()


def test_members_beyond_the_caps_are_refused_before_any_is_read(laptop, tmp_path, monkeypatch):
    read = []
    extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: read.append(member.name)
                        or extract(self, member))
    monkeypatch.setattr(publish, "MAX_MEMBER", 100)
    files = {"measurements/theory.json": _record()[:90], "figures/big.png": b"x" * 101}
    _refused(_archive(tmp_path / "big.tar.gz", files), "figures/big.png declares 101 bytes", tmp_path)
    monkeypatch.setattr(publish, "MAX_MEMBER", 2**20)
    files = {"figures/a.png": b"x" * 100, "figures/b.png": b"x" * 100}
    monkeypatch.setattr(publish, "MAX_TOTAL", len(_manifest(files)) + 150)
    _refused(_archive(tmp_path / "total.tar.gz", files), "figures/b.png declares 100 bytes", tmp_path)
    monkeypatch.setattr(publish, "MAX_MANIFEST", 50)
    _refused(_archive(tmp_path / "manifest.tar.gz"), "manifest.json declares", tmp_path)
    assert read == []  # only headers were read


def test_a_member_larger_than_its_manifest_says_is_refused_before_it_is_read(laptop, tmp_path, monkeypatch):
    read = []
    extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: read.append(member.name)
                        or extract(self, member))
    files = {"measurements/theory.json": _record(), "figures/theory.png": b"png"}
    manifest = json.loads(_manifest(files))
    manifest["files"]["figures/theory.png"]["size"] = 2
    _refused(_archive(tmp_path / "size.tar.gz", files, json.dumps(manifest).encode()),
             r"figures/theory.png does not match its SHA-256 and size in the manifest \(3 bytes; 2 declared\)",
             tmp_path)
    assert read == [publish.MANIFEST]


def test_a_member_cut_short_is_refused(laptop, tmp_path):
    files = {"measurements/theory.json": _record(), "figures/theory.png": b"png" * 400}
    good = _archive(tmp_path / "full.tar.gz", files)
    raw = gzip.decompress(good.read_bytes())
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(raw[:raw.index(b"pngpng") + 100]))
    _refused(cut, "is not accepted", tmp_path)


def test_a_bad_hash_is_refused(laptop, tmp_path):
    files = {"measurements/theory.json": _record(), "figures/theory.png": b"png"}
    archive = _archive(tmp_path / "hash.tar.gz", {**files, "figures/theory.png": b"PNG"}, _manifest(files))
    _refused(archive, "figures/theory.png does not match its SHA-256 in the manifest", tmp_path)
    archive = _archive(tmp_path / "hash2.tar.gz", {**files, "measurements/theory.json": _record(values={
        "pa": 0.9, "probability_at_threshold": {"5": 0.8}})}, _manifest(files))
    _refused(archive, "measurements/theory.json does not match its SHA-256", tmp_path)


GOOD = {"measurements/theory.json": _record()}


@pytest.mark.parametrize(("manifest", "match"), [
    (b"{not json", "manifest.json is not JSON"),
    (b"\xff\xfe", "manifest.json is not JSON"),
    (b"[1, 2]", r"manifest=\[1, 2\] is not accepted; expected an object with keys"),
    (b"null", "manifest=None is not accepted"),
    (json.dumps({"format": 2}).encode(), "manifest=.* is not accepted; expected an object with keys"),
    (_manifest(GOOD, files=["measurements/theory.json"]), "files=.* is not accepted"),
    (_manifest(GOOD, files={"measurements/theory.json": "ab" * 32}), r"files\['measurements/theory.json'\]="),
    (_manifest(GOOD, files={"measurements/theory.json": {"sha256": "x" * 64, "size": len(GOOD[
        "measurements/theory.json"])}}), r"\.sha256='xxx.* is not accepted; expected 64 hexadecimal digits"),
    (_manifest(GOOD, files={"measurements/theory.json": {"sha256": "0" * 64, "size": True}}),
     r"\.size=True is not accepted"),
    (_manifest(GOOD, format="2"), "format='2' is not accepted; expected 2"),
    (_manifest(GOOD, format=3), "format=3 is not accepted; expected 2"),
    (_manifest(GOOD, extra=1), "is not accepted; expected an object with keys"),
    (_manifest(GOOD, files={}), r"files \['measurements/theory.json'\] differ from its manifest"),
])
def test_a_bad_manifest_is_one_clear_error(laptop, tmp_path, manifest, match):
    _refused(_archive(tmp_path / "manifest.tar.gz", GOOD, manifest), match, tmp_path)


def test_a_format_1_archive_asks_for_a_new_export(laptop, tmp_path):
    data = GOOD["measurements/theory.json"]
    old = json.dumps({"format": 1, "profile": "imagenet", "exported": STAMP,
                      "files": {"measurements/theory.json": hashlib.sha256(data).hexdigest()}}).encode()
    _refused(_archive(tmp_path / "old.tar.gz", GOOD, old),
             "format=1 is not accepted; expected 2: re-export the profile with this version", tmp_path)


@pytest.mark.parametrize(("record", "match"), [
    (b"{not json", "is not accepted: Expecting property name"),
    (b"[]", "measurements/theory.json=\\[\\] is not accepted"),
    (_record(profile="fashion"), "is not theory's record of 'imagenet'"),
    (_record(stem="fig3_binary_search"), "is not theory's record"),
    (_record(values={"pa": "0.8", "probability_at_threshold": {}}), r"theory measurements.pa='0.8' is not accepted"),
    (_record(values={"pa": 0.8, "probability_at_threshold": {"five": 0.8}}), "has a key that is not a int"),
    (_record(values=[1]), "theory measurements=\\[1\\] is not accepted; expected an object"),
])
def test_a_bad_record_is_refused(laptop, tmp_path, record, match):
    _refused(_archive(tmp_path / "record.tar.gz", {"measurements/theory.json": record}), match, tmp_path)


def test_a_local_measurement_is_not_replaced_without_asking(laptop, tmp_path, monkeypatch):
    in_run(monkeypatch, profile="imagenet")
    measurements.record("theory", ThresholdCheck(0.9, {5: 0.9}))
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    _refused(_archive(tmp_path / "local.tar.gz"), r"computed on this machine too \(theory\)", tmp_path)


# Damaged records on this machine: an error naming the file, one broken column on the claims page.

def _two_profiles(monkeypatch) -> Path:
    """A good fig3 record under smoke, and under fashion one whose file is then damaged; the damaged path."""
    for profile in ("smoke", "fashion"):
        in_run(monkeypatch, profile=profile)
        measurements.record("fig3_binary_search", SPREAD)
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    damaged = measurements.path("fig3_binary_search", "fashion")
    damaged.write_text('{"stem": "fig3_binary_search", "values": {"dataset": "digits", "seed": [0')
    return damaged


@pytest.mark.parametrize("text", ["", "{not json", "[1]", '{"values": 3}', '{"values": {"pa": 1}}', "\udcff"])
def test_a_corrupt_measurement_file_names_itself(laptop, text):
    target = measurements.path("theory", "smoke")
    target.parent.mkdir(parents=True)
    target.write_text(text, errors="surrogateescape")
    with pytest.raises(ValueError, match=re.escape(str(target))):
        measurements.load("theory", "smoke")
    with pytest.raises(ValueError, match=re.escape(str(target))):
        measurements.load("theory")
    if text.startswith('{"values": {'):
        assert measurements.provenance("theory", "smoke") is None
    else:
        with pytest.raises(ValueError, match=re.escape(str(target))):
            measurements.provenance("theory", "smoke")


def test_a_local_stamp_of_another_shape_names_its_file(laptop, monkeypatch):
    monkeypatch.setattr(provenance, "stamp", lambda: _stamp_with(("machine", "host"), ["x"]))
    in_run(monkeypatch, profile="smoke")
    target = measurements.record("theory", THEORY)
    with pytest.raises(ValueError, match=re.escape(f"measurement file {target}: provenance.machine.host=")):
        measurements.provenance("theory", "smoke")


def test_a_damaged_profile_is_one_broken_column(laptop, monkeypatch):
    damaged = _two_profiles(monkeypatch)
    alone = scorecard.across_profiles(["smoke"])
    table = scorecard.across_profiles(["fashion", "smoke"])
    broken = table[table.profile == "fashion"]
    assert (broken.verdict == kernel.DAMAGED).all() and len(broken) == len(paper.CLAIMS)
    assert broken.damage.iloc[0].startswith(f"measurement file {damaged} cannot be read")
    smoke = table[table.profile == "smoke"].reset_index(drop=True)
    assert smoke.drop(columns="damage").equals(alone.drop(columns="damage"))
    text = scorecard.across_markdown(table)
    header, _, *rows = text.split("\n\n")[0].splitlines()
    assert header == "| # | smoke (d = 64) | fashion (damaged) |"
    assert all(_cells(row)[2].strip() == kernel.DAMAGED for row in rows)
    assert ("The column fashion is damaged, its verdicts are not shown: measurement file "
            f"{markup.markdown_cell(damaged)} cannot be read: Expecting") in text
    assert "left out: damaged records" in scorecard.dimension_sentence(table)
    assert set(scorecard.across_dimension(["fashion", "smoke"]).profile) <= {"smoke"}
    provenance = scorecard.provenance_markdown(["smoke", "fashion"]).splitlines()
    assert provenance[2].startswith("| smoke | gpu\\-1 |") or provenance[2].startswith("| smoke | gpu-1 |")
    assert provenance[3].startswith(f"| fashion | {kernel.DAMAGED}: measurement file {markup.markdown_cell(damaged)}")
    assert len(_cells(provenance[3])) == 6


def test_a_record_naming_markup_is_shown_as_text(laptop, monkeypatch):
    in_run(monkeypatch, profile="smoke")
    measurements.record("fig3_binary_search", SPREAD)
    card = scorecard.scorecard("smoke")
    card.loc[card.claim == 8, "measured"] = HOSTILE
    html = MarkdownIt("commonmark").enable("table").render(scorecard.scorecard_markdown(card))
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;|**x**" in html
    odd = measurements.path("fig3_binary_search", "<b>x|y").parent
    (odd / "<b>x|y.json").write_text(measurements.path("fig3_binary_search", "smoke").read_text())
    profiles = measurements.recorded_profiles()
    for text in (scorecard.across_markdown(scorecard.across_profiles(profiles)),
                 scorecard.provenance_markdown(profiles)):
        assert "<b>" not in MarkdownIt("commonmark").enable("table").render(text)


def test_markup_renders_as_text_with_the_books_myst_extensions():
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    parser = create_md_parser(MdParserConfig(enable_extensions={"amsmath", "colon_fence", "dollarmath",
                                                                "substitution"}), RendererHTML)
    text = (HOSTILE + " `c` [l](javascript:x) $x$ $$y$$ {{ sub }} {role}`x` ~~s~~ \\ &lt; <!-- c --> ::: (x1)")
    html = parser.render(f"| a | b |\n|---|---|\n| {markup.markdown_cell(text)} | x |")
    assert html.count("<td>") == 2 and f"<td>{markup.html_text(text)}</td>" in html
