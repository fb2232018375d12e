"""The image library driven directly: display helpers, --change handling, the tar checker, import/save/load."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from imagetest_util import layer_tar

from pybuild.errors import PybuildError
from pybuild.export.common import ArchiveError, ArchiveFormat
from pybuild.image.changes import apply_changes, parse_changes
from pybuild.image.display import human_duration, human_size, table
from pybuild.image.importer import TarChecker, import_tarball
from pybuild.image.query import history_rows, image_rows, inspect_image
from pybuild.image.transfer import load_images, save_images
from pybuild.model.oci import ContainerConfig
from pybuild.store import Store


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (4261550, "4.26MB"), (77_800_000, "77.8MB"), (1.5e9, "1.5GB")],
)
def test_human_size(size: float, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (150, "2 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
     (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_table_pads_like_docker() -> None:
    assert table(["A", "LONGER HEADER", "Z"], [["x", "y", "last column is not padded"]]).splitlines() == [
        "A         LONGER HEADER   Z",
        "x         y               last column is not padded",
    ]


def test_changes_apply_in_order() -> None:
    cfg = apply_changes(ContainerConfig(env=("PATH=/bin",)), parse_changes([
        "ENV HOME=/root DIR=/srv", "WORKDIR $DIR", 'LABEL "a b"="c d"', "EXPOSE 8000-8002/udp",
        "CMD echo $HOME", 'ENTRYPOINT ["/init"]', "VOLUME /a /b", "USER ${HOME##*/}",
    ]))
    assert cfg.env == ("PATH=/bin", "HOME=/root", "DIR=/srv")
    assert cfg.working_dir == "/srv"
    assert cfg.labels == {"a b": "c d"}
    assert cfg.exposed_ports == ("8000/udp", "8001/udp", "8002/udp")
    assert cfg.cmd == ("/bin/sh", "-c", "echo $HOME")  # CMD text is the container shell's to expand
    assert cfg.entrypoint == ("/init",)
    assert cfg.volumes == ("/a", "/b")
    assert cfg.user == "root"


@pytest.mark.parametrize("bad", ["RUN make", "FROM scratch", "COPY a b", "EXPOSE eighty", "ENV"])
def test_bad_changes_are_user_errors(bad: str) -> None:
    with pytest.raises(PybuildError):
        apply_changes(ContainerConfig(), parse_changes([bad]))


def test_tar_checker_accepts_real_tars_in_any_chunking() -> None:
    data = layer_tar({"a": b"x" * 1000, "b/c": b""}, dirs=["b"])
    for step in (1, 7, 512, 513, len(data)):
        checker = TarChecker("t")
        for i in range(0, len(data), step):
            checker.feed(data[i : i + step])
        checker.finish()
        assert checker.members == 3


def test_tar_checker_rejects_truncation_and_garbage() -> None:
    data = layer_tar({"a": b"x" * 1000})
    for cut in (100, 512, 1024, 1536):
        checker = TarChecker("t")
        checker.feed(data[:cut])
        with pytest.raises(ArchiveError, match=r"truncated|bad tar header"):
            checker.finish()
    with pytest.raises(ArchiveError, match="not a tar archive"):
        TarChecker("t").feed(b"hello world" * 100)


def test_import_save_load_through_the_library(tmp_path: Path) -> None:
    tarball = gzip.compress(layer_tar({"etc/hostname": b"box\n"}, dirs=["etc"]))
    with Store.open(tmp_path / "a") as store:
        img = import_tarball(store, None, "box", stdin=io.BytesIO(tarball), changes=["CMD /bin/sh"])
        assert img.names == ("box:latest",)
        assert [r.tag for r in image_rows(store, "box")] == ["latest"]
        assert inspect_image(store, img)["RepoDigests"] == [f"box@{img.manifest_digest}"]
        (row,) = history_rows(img)
        assert row.id == img.id and row.comment == "Imported from -"
        save_images(store, ["box"], tmp_path / "box.tar", ArchiveFormat.OCI)
    with Store.open(tmp_path / "b") as store:
        (loaded,) = load_images(store, tmp_path / "box.tar")
        assert loaded.lines() == ["Loaded image: box:latest"]
        assert (loaded.id, loaded.manifest_digest) == (img.id, img.manifest_digest)
        assert store.verify() == []
        # loading again changes nothing
        load_images(store, tmp_path / "box.tar")
        assert [i.manifest_digest for i in store.list_images()] == [img.manifest_digest]


def test_save_by_id_saves_without_names(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a") as store:
        img = import_tarball(store, None, "box:1", stdin=io.BytesIO(layer_tar({"f": b"1"})))
        save_images(store, [img.short_id], tmp_path / "x.tar")
    with Store.open(tmp_path / "b") as store:
        (loaded,) = load_images(store, tmp_path / "x.tar")
        assert loaded.lines() == [f"Loaded image ID: {img.id}"]
