"""Uploads from the Train page (Starlette's TestClient): a CSV or a zip of images is read by the CLI's
own readers and kept as ``uploads/<name>``, then offered as a data set; every refusal (too large,
path traversal, links, too many members, a decompression bomb, a truncated image, a CSV error)
answers one line beside the upload field and leaves nothing behind."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
import stat
import time
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("starlette")
PIL = pytest.importorskip("PIL")
with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 but works with httpx (the test extra's)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from PIL import Image  # noqa: E402

from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.training import config_from_form  # noqa: E402
from aelab.serve.uploads import UploadRefused, Uploads  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


@pytest.fixture
def client(ws):
    with TestClient(create_app(ws, max_upload_bytes=1 << 20), base_url=BASE) as c:
        yield c


def csv_bytes(rows: int = 60, cols: int = 6, bad: str = "") -> bytes:
    rng = np.random.default_rng(0)
    lines = [",".join(f"f{j}" for j in range(cols))]
    for _ in range(rows):
        lines.append(",".join(f"{v:.4f}" for v in rng.random(cols)))
    if bad:
        lines[3] = bad
    return ("\n".join(lines) + "\n").encode()


def png(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    a = np.full((size, size), value, np.uint8)
    a[size // 2, :] = 255 - value
    Image.fromarray(a, "L").save(buf, "PNG")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def post(client, filename: str, data: bytes, name: str = "", label_column: str = ""):
    form = {**({"name": name} if name else {}), **({"label_column": label_column} if label_column else {})}
    return client.post("/train/upload", files={"file": (filename, data)}, data=form, follow_redirects=False)


def upload_error(r) -> str:
    m = re.search(r'id="upload-error"[^>]*>(.*?)</span>', r.text, re.S)
    assert m, f"no message beside the upload field (status {r.status_code})"
    return html_lib.unescape(m.group(1))


def kept(ws) -> list[str]:
    """Everything under uploads/ (hidden temporaries included): nothing on a refusal."""
    root = ws.root / "uploads"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_a_csv_is_kept_offered_and_trains(client, ws):
    r = post(client, "my table.csv", csv_bytes())
    assert r.status_code == 303 and r.headers["location"] == "/train?data=upload:my-table"
    assert kept(ws) == ["my-table", "my-table/.upload.json", "my-table/data.csv"]
    meta = json.loads((ws.root / "uploads" / "my-table" / ".upload.json").read_text())
    assert meta == {"file": "my table.csv", "kind": "table", "summary": "60 rows × 6 columns"}
    page = client.get(r.headers["location"]).text
    assert re.search(r'<option value="upload:my-table" selected>upload: my-table \(60 rows × 6 columns\)', page)
    assert 'id="upload-ok"' in page
    # the form names it by its upload name; the config gets its path
    cfg, errors = config_from_form({"family": "ae", "data.dataset": "upload:my-table", "train.epochs": "2",
                                    "model.decoder": "6:sigmoid"}, client.app.state.trainer.uploads)
    assert not errors, errors
    assert cfg.data.dataset == str((ws.root / "uploads" / "my-table" / "data.csv").resolve())
    assert cfg.model.input_shape == (6,)
    r = client.post("/train", data={"family": "ae", "data.dataset": "upload:my-table", "train.epochs": "2",
                                    "train.batch_size": "16", "name": "tab"}, follow_redirects=False)
    assert r.status_code == 303, upload_error(r) if r.status_code != 303 else ""
    job = client.app.state.trainer.jobs["runs/tab"]
    end = time.monotonic() + 120
    while job.alive and time.monotonic() < end:
        time.sleep(0.1)
    assert job.state == "finished", job.message
    assert len(job.history["loss"]) == 2


def test_a_csv_with_a_label_column_named_at_upload_trains_with_its_labels(client, ws):
    rng = np.random.default_rng(1)
    rows = [f"{a:.3f},{b:.3f},{c:.3f},{sp}" for a, b, c, sp in
            zip(rng.random(90), rng.random(90), rng.random(90), ["setosa", "virginica", "versicolor"] * 30)]
    data = ("x1,x2,x3,species\n" + "\n".join(rows) + "\n").encode()
    r = post(client, "iris.csv", data)  # without the column named: its names are not numbers
    assert r.status_code == 400 and "column 'species' holds 'setosa'" in upload_error(r) and kept(ws) == []
    r = post(client, "iris.csv", data, label_column="kind")
    assert r.status_code == 400 and "kind" in upload_error(r) and kept(ws) == []
    r = post(client, "iris.csv", data, label_column="species")
    assert r.status_code == 303
    meta = json.loads((ws.root / "uploads" / "iris" / ".upload.json").read_text())
    assert meta["label_column"] == "species" and meta["summary"] == "90 rows × 3 columns, 3 classes"
    cfg, errors = config_from_form({"family": "ae", "data.dataset": "upload:iris", "model.decoder": "3:sigmoid"},
                                   client.app.state.trainer.uploads)
    assert not errors, errors
    assert cfg.data.source.label_column == "species" and cfg.model.input_shape == (3,)
    # the Studies page's data choice carries it too
    assert client.app.state.launcher.data_choice("upload:iris") == {
        "data.dataset": str((ws.root / "uploads" / "iris" / "data.csv").resolve()), "data.label_column": "species"}
    # a zip's labels are its folders
    r = post(client, "imgs.zip", zip_bytes({"a/1.png": png(10), "b/2.png": png(200)}), label_column="species")
    assert r.status_code == 400 and "a label column applies to a .csv table" in upload_error(r)
    assert kept(ws) == ["iris", "iris/.upload.json", "iris/data.csv"]


def test_a_zip_of_class_folders_is_read_as_the_cli_reads_a_folder(client, ws):
    members = {f"mine/{c}/{i}.png": png(40 * i + 10 * int(c)) for c in "01" for i in range(5)}
    members["__MACOSX/mine/._0.png"] = b"resource fork"
    members["mine/.DS_Store"] = b"finder"
    r = post(client, "mine.zip", zip_bytes(members), name="pics")
    assert r.status_code == 303, upload_error(r)
    up = client.app.state.trainer.uploads.get("pics")
    assert up.kind == "images" and up.summary == "10 images of 1×8×8, 2 classes"
    assert sorted(p.name for p in (ws.root / "uploads" / "pics").iterdir()) == [".upload.json", "0", "1"]
    import aelab.data  # the CLI's reader on the kept folder: the same images

    ds = aelab.data.load(aelab.data.DataConfig(dataset=up.dataset))
    assert ds.classes == ("0", "1") and len(ds.x_train) + len(ds.x_test) == 10


def test_a_csv_error_is_one_line_beside_the_field_and_nothing_is_kept(client, ws):
    r = post(client, "t.csv", csv_bytes(bad="0.1,0.2,oops,0.4,0.5,0.6"))
    assert r.status_code == 400
    msg = upload_error(r)
    assert msg == ("t.csv: row 4, column 'f2' holds 'oops', not a number; every feature must be a number "
                   "(name a label column in the Label column field)")
    assert "\n" not in msg and str(ws.root) not in msg
    assert kept(ws) == []
    r = post(client, "t.csv", b"1,2,3\n4,5,6\n")
    assert "the first row holds numbers, not column names" in upload_error(r) and kept(ws) == []


@pytest.mark.parametrize("members, links, needle", [
    ({"../evil.png": b"x"}, (), "leads out of the archive"),
    ({"a/../../evil.png": b"x"}, (), "leads out of the archive"),
    ({"/etc/evil.png": b"x"}, (), "absolute or Windows path"),
    ({"C:/evil.png": b"x"}, (), "absolute or Windows path"),
    ({"a\\..\\evil.png": b"x"}, (), "absolute or Windows path"),
    ({"a.png": png(3)}, ("b.png",), "is a symbolic link"),
])
def test_unsafe_zip_members_are_refused(client, ws, members, links, needle):
    r = post(client, "x.zip", zip_bytes(members, links))
    assert r.status_code == 400 and needle in upload_error(r)
    assert kept(ws) == []
    assert not (ws.root.parent / "evil.png").exists()


def test_a_decompression_bomb_is_refused_by_what_it_inflates(client, ws):
    bomb = zip_bytes({"a.png": png(1), "big.png": bytes(6 << 20)})  # 6 MB of zeros: a few KB zipped
    assert len(bomb) < 64 << 10
    r = post(client, "bomb.zip", bomb)
    assert r.status_code == 400 and "unpacks to more than 4 MB (a decompression bomb" in upload_error(r)
    assert kept(ws) == []


def test_too_many_members_and_too_large_are_refused(client, ws, tmp_path):
    up = Uploads(tmp_path / "u", max_members=5)
    with pytest.raises(UploadRefused, match="holds 6 entries; at most 5"):
        up.add("many.zip", zip_bytes({f"{i}.png": png(i) for i in range(6)}))
    assert not (tmp_path / "u").exists() or list((tmp_path / "u").iterdir()) == []
    r = post(client, "big.csv", csv_bytes(rows=20000, cols=8))  # about 1.1 MB, over this server's 1 MB
    assert r.status_code == 413
    assert re.match(r"the upload is 1\.\d MB; the limit is 1 MB \(start the server with aelab serve "
                    r"--max-upload-mb N", upload_error(r))
    assert kept(ws) == []


def test_truncated_and_corrupt_files_are_refused(client, ws):
    good = png(9)
    r = post(client, "cut.zip", zip_bytes({"a.png": good, "b.png": good[: len(good) // 2]}))
    assert r.status_code == 400
    assert upload_error(r).startswith("cut.zip: b.png: not a readable image (")
    r = post(client, "junk.zip", b"PK\x03\x04 this is not a zip at all")
    assert "junk.zip: not a readable zip archive" in upload_error(r)
    r = post(client, "notes.txt", b"hello")
    assert "upload a .csv table" in upload_error(r)
    r = post(client, "a.zip", zip_bytes({"a.png": good, "notes.txt": b"x"}))
    assert "notes.txt: not an image file name" in upload_error(r)
    assert kept(ws) == []


def test_names_are_checked_and_never_overwritten(client, ws):
    assert post(client, "t.csv", csv_bytes()).status_code == 303
    before = (ws.root / "uploads" / "t" / "data.csv").read_bytes()
    r = post(client, "other.csv", csv_bytes(rows=10), name="t")
    assert r.status_code == 400 and "an upload named 't' exists already" in upload_error(r)
    assert (ws.root / "uploads" / "t" / "data.csv").read_bytes() == before
    r = post(client, "t.csv", csv_bytes(), name="../up")
    assert "use letters, digits" in upload_error(r)
    assert kept(ws) == ["t", "t/.upload.json", "t/data.csv"]


def test_the_form_never_takes_a_path_as_data(client, ws, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_bytes(csv_bytes())
    r = client.post("/train", data={"family": "ae", "data.dataset": str(secret), "train.epochs": "1"})
    assert r.status_code == 400
    assert "is not a data set here; choose one from the list" in html_lib.unescape(r.text)
    r = client.post("/train", data={"family": "ae", "data.dataset": "upload:nothere", "train.epochs": "1"})
    assert r.status_code == 400 and "no upload named 'nothere'" in html_lib.unescape(r.text)
    assert not client.app.state.trainer.jobs
