"""The datastore commands through the real `ess` command line (woodworking tutorial data)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import WOODWORKING, EssEnv

SUMMARY = """
------------------------------------------------------------------------
-------------------------------- local ---------------------------------
------------------------------------------------------------------------

============================= File summary =============================
Name        Count  Size    first       last
--------  -------  ------  ----------  ----------
browse         30  1.9M    2014-09-01  2014-09-30
purchase       30  372.0K  2014-09-01  2014-09-30 

========================================================================

"""  # noqa: W291 - the trailing blank after the last row is Essentia's


def setup_woodworking(env: EssEnv) -> None:
    for args in (
        ("select", "local"),
        ("category", "add", "browse", f"{WOODWORKING}/*browse_*"),
        ("category", "change", "columnspec", "browse", "S:eventDate S:userID I:articleID"),
        ("category", "add", "purchase", f"{WOODWORKING}/*purchase_*"),
        (
            "category",
            "change",
            "columnspec",
            "purchase",
            "S:purchaseDate S:userID I:articleID f:price I:refID",
        ),
    ):
        result = env.ess(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "", f"{args} printed on stdout"


def state_digest(env: EssEnv) -> str:
    digest = hashlib.sha256()
    for path in sorted(env.root.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def test_woodworking_setup_and_summary(ess_env: EssEnv) -> None:
    setup_woodworking(ess_env)
    result = ess_env.ess("summary")
    assert result.returncode == 0
    assert result.stdout == SUMMARY
    assert ess_env.ess("summary", "purchase", "columnspec").stdout == (
        "S:purchaseDate S:userID I:articleID f:price I:refID\n"
    )


def test_category_summary_shows_the_largest_file_sample(ess_env: EssEnv) -> None:
    setup_woodworking(ess_env)
    text = ess_env.ess("summary", "browse").stdout
    assert "Name:        browse\n" in text
    assert "Exclude:     None\nDate Format: auto\nDate Regex:\n" in text
    assert "# of files:  30\nTotal size:  1.9M\nFile range:  2014-09-01 - 2014-09-30\n" in text
    assert "Column Spec: S:eventDate S:userID I:articleID\n" in text
    assert text.endswith(
        "First few lines:\neventDate,userID,articleID\n2014-09-12T00:00:10,8917,50\n"
        "2014-09-12T00:00:11,2410,31\n2014-09-12T00:00:11,5121,36\n2014-09-12T00:00:30,9764,35\n"
    )


def test_probe_infers_the_documented_purchase_spec(ess_env: EssEnv) -> None:
    ess_env.ess("category", "add", "purchase", f"{WOODWORKING}/*purchase_*", check=True)
    assert ess_env.ess("summary", "purchase", "columnspec").stdout == (
        "S:purchaseDate I:userID I:articleID F:price S:refID\n"
    )
    probe = ess_env.ess("probe", "purchase", "--file", str(WOODWORKING / "purchase_20140901.gz"))
    assert "Compression: gzip\n" in probe.stdout and "Header:      yes\n" in probe.stdout


def test_readd_without_overwrite_keeps_the_old_definition(ess_env: EssEnv) -> None:
    setup_woodworking(ess_env)
    before = state_digest(ess_env)
    again = ess_env.ess("category", "add", "browse", f"{WOODWORKING}/*browse*gz")
    assert again.returncode == 0 and again.stdout == ""
    assert "already exists" in again.stderr
    assert state_digest(ess_env) == before
    replaced = ess_env.ess(
        "category", "add", "browse", f"{WOODWORKING}/*browse_2014090*", "--overwrite"
    )
    assert replaced.returncode == 0
    assert "# of files:  9\n" in ess_env.ess("summary", "browse").stdout


def test_exclude_multiple_patterns_and_dateregex(ess_env: EssEnv) -> None:
    ess_env.ess(
        "category",
        "add",
        "mix",
        f"{WOODWORKING}/*browse_2014090[1-3]* {WOODWORKING}/*purchase_2014091*",
        "--exclude",
        f"{WOODWORKING}/purchase_2014091[5-9]*",
        "--noprobe",
        check=True,
    )
    names = ess_env.ess("ls", "--cat", "mix", "--nameonly").stdout.split()
    assert [Path(n).name for n in names] == [
        "browse_20140901.gz",
        "browse_20140902.gz",
        "browse_20140903.gz",
        *[f"purchase_2014091{d}.gz" for d in range(5)],
    ]
    ess_env.ess(
        "category",
        "add",
        "nodate",
        f"{WOODWORKING}/*browse_2014090[12]*",
        "--dateregex",
        "none",
        "--noprobe",
        check=True,
    )
    assert "1970-01-01  1970-01-01" in ess_env.ess("summary").stdout
    ess_env.ess("category", "change", "dateregex", "nodate", "_[:%Y:][:%m:][:%d:]", check=True)
    row = [r for r in ess_env.ess("summary").stdout.splitlines() if r.startswith("nodate")]
    assert row[0].split()[:2] == ["nodate", "2"]
    assert row[0].split()[3:] == ["2014-09-01", "2014-09-02"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("summary", "nosuch"), "unknown category 'nosuch'"),
        (("category", "add", "empty", "/nonexistent/dir/*.gz"), "matches no file"),
        (
            ("category", "add", "bad", f"{WOODWORKING}/*", "--dateregex", "[:%Y:]("),
            "invalid regular expression",
        ),
        (("category", "change", "dateregex", "browse", "[:%Q:]"), "unknown token"),
        (
            ("select", "s3://bucket", "--credentials", "/nonexistent/creds.csv"),
            "credentials file /nonexistent/creds.csv",
        ),
        (("select", "nosuchlabel"), "unknown datastore 'nosuchlabel'"),
        (("category", "add", "bad name", f"{WOODWORKING}/*"), "category name"),
        (("category", "delete", "nosuch"), "unknown category"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    ess_env: EssEnv, args: tuple[str, ...], message: str
) -> None:
    setup_woodworking(ess_env)
    before = state_digest(ess_env)
    result = ess_env.ess(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert state_digest(ess_env) == before


def test_cat_decompresses_by_content_and_reports_corruption(ess_env: EssEnv) -> None:
    plain = ess_env.root / "plain.gz"
    plain.write_bytes(b"not compressed\n")
    assert ess_env.ess("cat", "--decompress", str(plain)).stdout == "not compressed\n"
    raw = ess_env.run("cat", str(WOODWORKING / "browse_20140901.gz"), input=b"")
    assert raw.returncode == 0
    assert (
        raw.stdout.encode(errors="surrogateescape")
        == (WOODWORKING / "browse_20140901.gz").read_bytes()
    )
    text = ess_env.run(
        "cat", "--decompress", str(WOODWORKING / "browse_20140901.gz"), input=b""
    ).stdout
    assert text.count("\n") == 9896 and text.startswith("eventDate,userID,articleID\r\n")
    corrupt = ess_env.root / "corrupt.gz"
    data = bytearray(gzip.compress(b"x,y\n" * 50000))
    data[100:160] = b"\xff" * 60
    corrupt.write_bytes(bytes(data))
    result = ess_env.ess("cat", "--decompress", "corrupt.gz")
    assert result.returncode == 4
    assert "corrupt.gz: corrupt gzip data" in result.stderr


def test_lsa_lists_archive_members(ess_env: EssEnv) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as archive:
        for name in ("climate/0114.op", "climate/0115.op", "climate/0116.op"):
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    (ess_env.root / "climate.tar.bz2").write_bytes(buf.getvalue())
    result = ess_env.ess("lsa", "climate.tar.bz2", "--pattern", "*0114* *0115*")
    assert result.stdout.split() == ["climate/0114.op", "climate/0115.op"]


def test_ls_delete_copy_and_purge(ess_env: EssEnv) -> None:
    setup_woodworking(ess_env)
    listing = ess_env.ess("ls", "-r", f"{WOODWORKING}/*purchase_2014090[1-2]*").stdout
    assert listing.splitlines() == [
        f"{WOODWORKING}/purchase_20140901.gz\t14298\t2014-09-01",
        f"{WOODWORKING}/purchase_20140902.gz\t9506\t2014-09-02",
    ]
    assert ess_env.ess("category", "copy", "browse", "browse2").returncode == 0
    assert ess_env.ess("summary", "browse2", "columnspec").stdout == (
        "S:eventDate S:userID I:articleID\n"
    )
    assert ess_env.ess("category", "delete", "browse").returncode == 0
    assert "browse2" in ess_env.ess("summary").stdout
    assert ess_env.ess("purge", "local").returncode == 0
    # Essentia's own scripts add categories right after `ess purge local`, without a select.
    ess_env.ess("category", "add", "browse", f"{WOODWORKING}/*browse_*", check=True)
    summary = ess_env.ess("summary").stdout
    assert "browse " in summary and "browse2" not in summary and "purchase" not in summary


def test_concurrent_category_adds_are_all_kept(ess_env: EssEnv) -> None:
    names = [f"day{d}" for d in range(1, 7)]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(
            pool.map(
                lambda n: ess_env.ess(
                    "category", "add", n, f"{WOODWORKING}/*browse_2014090{n[-1]}*", "--noprobe"
                ),
                names,
            )
        )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    summary = ess_env.ess("summary").stdout
    for name in names:
        assert f"\n{name} " in summary


def test_version_and_help(ess_env: EssEnv) -> None:
    version = ess_env.run("-v")
    assert version.returncode == 0 and version.stderr.startswith("Essentia : ")
    assert version.stderr.splitlines()[0].split(" ")[2]
    for command in ("select", "summary", "ls", "category", "cat", "lsa", "probe", "purge"):
        assert "example:" in ess_env.ess(command, "-h").stdout


def test_usecache_keeps_the_cached_list_until_rescanned(ess_env: EssEnv) -> None:
    data = ess_env.root / "data"
    data.mkdir()
    (data / "log_20140901.csv").write_text("a,b\n1,2\n")
    ess_env.ess("category", "add", "cached", f"{data}/*.csv", "--usecache", check=True)
    ess_env.ess("category", "add", "fresh", f"{data}/*.csv", check=True)
    (data / "log_20140902.csv").write_text("a,b\n3,4\n")
    assert len(ess_env.ess("ls", "--cat", "cached").stdout.splitlines()) == 1
    assert len(ess_env.ess("ls", "--cat", "fresh").stdout.splitlines()) == 2
    ess_env.ess("category", "change", "usecache", "cached", "--nocache", check=True)
    assert len(ess_env.ess("ls", "--cat", "cached").stdout.splitlines()) == 2
    assert "usecache:    False" in ess_env.ess("summary", "cached").stdout


def test_archive_category_probes_the_selected_member(ess_env: EssEnv) -> None:
    import zipfile

    data = ess_env.root / "zips"
    data.mkdir()
    with zipfile.ZipFile(data / "export_20150101.zip", "w") as archive:
        archive.writestr("file_1_Site_12345", "site,visits\nhome,10\nshop,7\n")
        archive.writestr("file_1_Placement_12345", "slot|price|ip\ntop|1.5|10.0.0.1\n")
    ess_env.ess("category", "add", "place", f"{data}/*.zip", "--archive", "*Placement*", check=True)
    assert ess_env.ess("summary", "place", "columnspec").stdout == "S:slot F:price IP:ip\n"
    assert ess_env.ess("summary", "place", "delimiter").stdout == "|\n"
    assert ess_env.ess("summary", "place", "compression").stdout == "zip\n"
    listing = ess_env.ess("lsa", f"{data}/export_20150101.zip").stdout.split()
    assert sorted(listing) == ["file_1_Placement_12345", "file_1_Site_12345"]


def test_ls_shows_dates_with_a_rule(ess_env: EssEnv) -> None:
    rows = ess_env.ess(
        "ls", "-r", f"{WOODWORKING}/browse_2014090[1]*", "--dateregex", "_[:%Y:][:%d:][:%m:]"
    ).stdout.splitlines()
    assert rows == [f"{WOODWORKING}/browse_20140901.gz\t66696\t2014-01-09"]
    rows = ess_env.ess("ls", "-r", f"{WOODWORKING}/browse_2014090[1]*", "--nosize").stdout
    assert rows == f"{WOODWORKING}/browse_20140901.gz\t2014-09-01\n"
