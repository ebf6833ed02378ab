"""The Draw and Explore pages' server side (aelab.serve.lab), without a browser: the MNIST-style
preprocessing against hand-computed images, and the JSON APIs against TrainedRun's own answers on
the same inputs (Starlette's TestClient on the lab's routes alone)."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from PIL import Image  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
with warnings.catch_warnings():  # starlette ≥ 0.50 asks for httpx2; httpx (the test extra's) still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import aelab  # noqa: E402
from aelab.serve.lab import add_noise, draw_ink, mnist_preprocess, rasterize, routes, to_uint8  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402

from conftest import mnist_available  # noqa: E402


# -- the preprocessing, by hand ------------------------------------------------------------------
def box(rows, cols, value=255.0, shape=(100, 100)):
    a = np.zeros(shape)
    a[rows[0]:rows[1], cols[0]:cols[1]] = value
    return a


def ink_box(img):
    r, c = np.nonzero(img)
    return int(r.min()), int(r.max()), int(c.min()), int(c.max())


def test_empty_drawing_is_black():
    assert mnist_preprocess(np.zeros((50, 70))).tolist() == np.zeros((28, 28), np.uint8).tolist()


def test_square_fills_the_20_box_centred():
    # 40×40 ink anywhere → 20×20 at rows/cols 4..23 (centre of mass 13.5: no shift)
    out = mnist_preprocess(box((10, 50), (30, 70)))
    assert ink_box(out) == (4, 23, 4, 23)
    assert set(np.unique(out)) == {0, 255}


def test_aspect_ratio_kept_and_centred_by_mass():
    # 40 tall × 10 wide, any ink level → 20 × 5 (scale 1/2); geometric placement cols 11..15 puts the
    # centre of mass at column 13, half a pixel left of 13.5: shifted one column right (rounds half up)
    out = mnist_preprocess(box((10, 50), (30, 40), value=7.0))
    assert ink_box(out) == (4, 23, 12, 16)
    assert out.max() == 255  # the darkest ink is 255 whatever the input's range


def test_centre_of_mass_shift_of_an_uneven_shape():
    # 40×40 box: top half full, bottom half only its left half → 20×20: rows 0-9 full, rows 10-19 cols 0-9.
    # mass 200 (top) + 100 (bottom): centre row = (200·4.5 + 100·14.5)/300 = 7.83, col = (200·9.5 + 100·4.5)/300
    # = 7.83; placed at 4 → 11.83; 13.5 − 11.83 = 1.67 → shift 2 both ways: the box starts at 6
    a = box((0, 20), (0, 40)) + box((20, 40), (0, 20))
    out = mnist_preprocess(a)
    want = np.zeros((28, 28), np.uint8)
    want[6:16, 6:26] = 255
    want[16:26, 6:16] = 255
    assert (out == want).all()


def test_area_averaging_gives_grey_edges():
    # 40 tall × 4 wide with columns 255, 0, 0, 51 → 20 × 2, each output column the mean of two:
    # 127.5 → 128 and 25.5 → 26 (rounded half up); placed at columns 13-14, mass centre 13.17: no shift
    a = np.zeros((60, 60))
    a[5:45, 10] = 255
    a[5:45, 13] = 51
    out = mnist_preprocess(a)
    assert ink_box(out) == (4, 23, 13, 14)
    assert np.abs(out[4:24, 13].astype(int) - 128).max() <= 1
    assert np.abs(out[4:24, 14].astype(int) - 26).max() <= 1


def test_small_dot_is_scaled_up_and_ink_never_leaves_the_field():
    a = np.zeros((30, 30))
    a[3, 4] = 9
    out = mnist_preprocess(a)
    assert ink_box(out) == (4, 23, 4, 23) and out.min() == 0 and out.max() == 255
    # a long thin stroke at the very edge: the mass shift is bounded so nothing is cut off
    b = np.zeros((40, 40))
    b[0, :] = 255
    b[:, 0] = 1
    out = mnist_preprocess(b)
    assert out.sum() > 0 and out[0].sum() + out[-1].sum() + out[:, 0].sum() + out[:, -1].sum() >= 0


def test_rasterize_draws_a_round_pen():
    ink = rasterize([[[10, 10], [50, 10]], [[80, 80]]], 100, 100, 8)
    assert ink.dtype == np.uint8 and ink.shape == (100, 100)
    assert ink[10, 30] == 255 and ink[10, 7] == 255 and ink[10, 55] == 0  # the cap reaches 4 px beyond the end
    assert ink[80, 80] == 255 and ink[80, 85] == 0  # one point: a dot of diameter 8
    assert ink[20, 30] == 0


def test_draw_ink_crops_to_the_strokes_and_keeps_the_result():
    strokes = [[[60, 40], [70, 200]], [[20, 120], [140, 120]]]
    ink = draw_ink(strokes, 336, 336, 20)
    assert max(ink.shape) <= 81  # rasterised small (the box's long side ≤ 80 px)
    full = mnist_preprocess(rasterize(strokes, 336, 336, 20))
    small = mnist_preprocess(ink)
    assert ink_box(small) == ink_box(full)
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 8  # the same digit, rasterised at another scale


def test_noise_is_seeded_and_clipped():
    x = mnist_preprocess(box((10, 50), (30, 70)))
    a, b, c = add_noise(x, 0.5, 1), add_noise(x, 0.5, 1), add_noise(x, 0.5, 2)
    assert (a == b).all() and not (a == c).all() and a.dtype == np.uint8
    assert (add_noise(x, 0.0, 1) == x).all()
    want = np.floor(np.clip(x / 255 + 0.5 * np.random.default_rng(1).standard_normal(x.shape), 0, 1) * 255 + 0.5)
    assert (a == want).all()


# -- the APIs against TrainedRun ------------------------------------------------------------------
#: test images of the runs (the browser test maps 5,000; here fewer keep the end-of-training latent numbers quick)
N_TEST = 1000

@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a lab AE (32-unit code) and a small dense VAE (2-D code), 1 epoch each on a
    slice of MNIST (the synthetic 28×28 digits when MNIST is not in the cache), N_TEST test images."""
    root = tmp_path_factory.mktemp("ws")
    data = "mnist" if mnist_available() else "synthetic"
    base = {"data.dataset": data, "data.limit": 1000, "data.test_limit": N_TEST, "train.epochs": 1}
    ae = aelab.fit_config(aelab.RunConfig().with_overrides({**base, "name": "ae"}))
    vae = aelab.fit_config(aelab.RunConfig().with_overrides(
        {**base, "name": "vae", "model.family": "vae", "model.latent": 2, "model.encoder": ["64:relu"],
         "model.decoder": ["64:relu", "784:sigmoid"]}))
    vq = aelab.fit_config(aelab.RunConfig().with_overrides(
        {**base, "name": "vq", "model.family": "vqvae", "model.encoder": ["64:relu", "16:linear"],
         "model.decoder": ["64:relu", "784:sigmoid"], "model.codebook_size": 16, "model.embedding_dim": 8}))
    aelab.train(ae, root / "runs" / "ae")
    aelab.train(vae, root / "runs" / "vae")
    aelab.train(vq, root / "runs" / "vq")
    return Workspace(root)


@pytest.fixture(scope="module")
def client(ws):
    with TestClient(Starlette(routes=routes(ws))) as c:
        yield c


STROKES = [[[90, 60], [250, 60], [200, 150], [150, 290]]]  # a 7


def b64u8(s):
    return np.frombuffer(base64.b64decode(s), np.uint8)


def draw(client, runs, **kw):
    r = client.post("/api/lab/draw", json={"runs": runs, "strokes": STROKES, "size": [336, 336], "pen": 22, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_runs_lists_the_finished_drawable_runs(client):
    runs = {r["run"]: r for r in client.get("/api/lab/runs").json()["runs"]}
    assert set(runs) == {"runs/ae", "runs/vae", "runs/vq"}
    assert runs["runs/vae"]["family"] == "vae" and runs["runs/ae"]["drawable"] and runs["runs/ae"]["shape"] == [1, 28, 28]


def test_reconstruction_equals_trained_run_on_the_same_input(client, ws):
    res = draw(client, ["runs/ae", "runs/vae"])
    x = b64u8(res["input"]).reshape(28, 28)
    assert (x == mnist_preprocess(draw_ink(STROKES, 336, 336, 22))).all() and x.max() == 255
    assert res["noisy"] is None
    for r in res["results"]:
        run = ws.open_run(r["run"])
        want = to_uint8(run.reconstruct(x.astype(np.float32)[None, None]), 255)
        got = b64u8(r["recon"]).reshape(1, 1, 28, 28)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # same bits but for a rounding tie
        code = run.encode(x.astype(np.float32)[None, None])[0]
        if r["run"] == "runs/vae":
            assert np.allclose(r["mu"], code, atol=1e-4) and len(r["sigma"]) == 2 and min(r["sigma"]) > 0
        else:
            assert np.allclose(r["code"], code, atol=1e-4, rtol=1e-4) and len(r["code"]) == 32


def test_noise_corrupts_the_input_first(client, ws):
    res = draw(client, ["runs/ae"], noise=0.4, seed=3)
    clean, noisy = b64u8(res["input"]).reshape(28, 28), b64u8(res["noisy"]).reshape(28, 28)
    assert (noisy == add_noise(clean, 0.4, 3)).all()
    run = ws.open_run("runs/ae")
    want = to_uint8(run.reconstruct(noisy.astype(np.float32)[None, None]), 255).ravel()
    assert np.abs(b64u8(res["results"][0]["recon"]).astype(int) - want).max() <= 1
    assert draw(client, ["runs/ae"], noise=0.4, seed=3) == res


@pytest.mark.parametrize("run, status", [("../ae", 403), ("/etc", 403), ("runs/nothing", 403), ("runs", 400), ("", 400)])
def test_bad_run_path_is_refused(client, run, status):
    r = client.post("/api/lab/draw", json={"runs": [run], "strokes": STROKES, "size": [336, 336]})
    assert r.status_code == status
    msg = r.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg
    r = client.get("/api/lab/map", params={"run": run})
    assert r.status_code == status


@pytest.mark.parametrize("body, needle", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"runs": ["runs/ae"], "strokes": []}', "'size'"),
    (b'{"runs": ["runs/ae"], "strokes": [[[1]]], "size": [336, 336]}', "[x, y]"),
    (b'{"runs": ["runs/ae"], "strokes": [[[1, NaN]]], "size": [336, 336]}', "[x, y]"),
    (b'{"runs": ["runs/ae"], "strokes": "x", "size": [336, 336]}', "'strokes'"),
    (b'{"runs": [], "strokes": [], "size": [336, 336]}', "'runs'"),
    (b'{"runs": ["runs/ae"], "strokes": [], "size": [336, 336], "noise": 5}', "'noise'"),
    (b'{"runs": ["runs/ae"], "strokes": [], "size": [336, 336], "seed": -1}', "'seed'"),
])
def test_bad_payload_is_a_400_with_one_line(client, body, needle):
    r = client.post("/api/lab/draw", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    msg = r.json()["error"]
    assert needle in msg and "\n" not in msg


def test_map_of_a_32d_code_is_pca_of_every_test_code(client, ws):
    m = client.get("/api/lab/map", params={"run": "runs/ae"}).json()
    assert m["method"] == "pca" and m["methods"] == ["pca", "tsne"] and m["dims"] == 32 and m["n"] == N_TEST
    pts = np.frombuffer(base64.b64decode(m["points"]), np.float32).reshape(-1, 2)
    labels = np.frombuffer(base64.b64decode(m["labels"]), np.int32)
    assert pts.shape == (N_TEST, 2) and labels.shape == (N_TEST,) and set(labels.tolist()) <= set(range(10))
    assert m["plane"] is None and m["image_shape"] == [1, 28, 28]  # a deterministic code: no decoding of the plane
    from aelab.latent import embed_2d
    from aelab.runs.codes import read_codes

    z = read_codes(ws.resolve("runs/ae"))["test_codes"]
    assert np.allclose(pts, embed_2d(z, "pca", 0), atol=1e-3)  # aelab latent's PCA of codes.npz
    assert client.get("/api/lab/map", params={"run": "runs/ae", "method": "code"}).status_code == 400


def test_map_of_a_2d_vae_is_the_code_and_decodes_locations(client, ws):
    m = client.get("/api/lab/map", params={"run": "runs/vae"}).json()
    assert m["method"] == "code" and m["methods"] == ["code"] and m["stochastic"]
    assert m["plane"] == {"mean": [0.0, 0.0], "axes": [[1.0, 0.0], [0.0, 1.0]]}
    r = client.post("/api/lab/decode", json={"run": "runs/vae", "z": [[0.5, -1.0]]}).json()["decoded"]
    want = to_uint8(ws.open_run("runs/vae").decode(np.array([[0.5, -1.0]], np.float32)), 255)
    assert r["shape"] == [1, 1, 28, 28] and np.abs(b64u8(r["data"]).astype(int) - want.ravel()).max() <= 1
    bad = client.post("/api/lab/decode", json={"run": "runs/vae", "z": [[1.0, 2.0, 3.0]]})
    assert bad.status_code == 400 and "2 finite numbers" in bad.json()["error"]


def test_sprites_hold_the_test_images_in_map_order(client, ws):
    r = client.get("/api/lab/sprites", params={"run": "runs/ae"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    sheet = np.asarray(Image.open(io.BytesIO(r.content)))
    assert sheet.shape == (N_TEST // 100 * 28, 100 * 28)
    from aelab.runs.codes import read_codes

    idx = read_codes(ws.resolve("runs/ae"))["test_index"]
    x = ws.open_run("runs/ae").dataset.x_test
    for k in (0, 1, 137, N_TEST - 1):
        r0, c0 = divmod(k, 100)
        assert (sheet[r0 * 28:(r0 + 1) * 28, c0 * 28:(c0 + 1) * 28] == x[idx[k], 0]).all()


def test_point_decodes_and_finds_its_nearest_neighbours(client, ws):
    res = client.post("/api/lab/point", json={"run": "runs/ae", "index": 10}).json()
    from aelab.runs.codes import read_codes

    z = read_codes(ws.resolve("runs/ae"))["test_codes"].astype(np.float64)
    d = ((z - z[10]) ** 2).sum(axis=1)
    d[10] = np.inf
    assert res["neighbours"] == np.argsort(d, kind="stable")[:8].tolist()
    assert np.allclose(res["code"], z[10])
    want = to_uint8(ws.open_run("runs/ae").decode(z[10:11].astype(np.float32)), 255).ravel()
    assert np.abs(b64u8(res["decoded"]["data"]).astype(int) - want).max() <= 1
    dims = [s["dim"] for s in res["sliders"]]
    assert len(dims) == 8 and dims[0] == int(np.argmax(z.var(axis=0)))
    assert client.post("/api/lab/point", json={"run": "runs/ae", "index": N_TEST}).status_code == 400


def test_interpolation_and_prior(client):
    r = client.post("/api/lab/interpolate", json={"run": "runs/vae", "a": 0, "b": 1, "steps": 6}).json()
    assert r["spherical"] and r["decoded"]["shape"] == [6, 1, 28, 28]
    r = client.post("/api/lab/interpolate", json={"run": "runs/ae", "a": 0, "b": 1}).json()
    assert not r["spherical"] and r["decoded"]["shape"] == [10, 1, 28, 28]
    p1 = client.post("/api/lab/prior", json={"run": "runs/vae", "n": 4, "seed": 1}).json()
    assert p1 == client.post("/api/lab/prior", json={"run": "runs/vae", "n": 4, "seed": 1}).json()
    assert p1["decoded"]["shape"] == [4, 1, 28, 28]
    r = client.post("/api/lab/prior", json={"run": "runs/ae"})
    assert r.status_code == 400 and "not a VAE" in r.json()["error"]


def test_a_run_without_codes_npz_is_mapped_from_its_model(ws, tmp_path):
    # a run trained before codes were saved: the same test subsample is encoded in memory, nothing written
    import shutil

    from aelab.runs.codes import read_codes

    shutil.copytree(ws.resolve("runs/ae"), tmp_path / "runs" / "old", ignore=shutil.ignore_patterns("codes.npz"))
    before = sorted(p.name for p in (tmp_path / "runs" / "old").iterdir())
    with TestClient(Starlette(routes=routes(Workspace(tmp_path)))) as c:
        m = c.get("/api/lab/map", params={"run": "runs/old"}).json()
        res = c.post("/api/lab/point", json={"run": "runs/old", "index": 7}).json()
    saved = read_codes(ws.resolve("runs/ae"))
    assert m["n"] == N_TEST and np.allclose(res["code"], saved["test_codes"][7], atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "runs" / "old").iterdir()) == before


def test_a_discrete_code_is_drawn_but_has_no_map(client, ws):
    res = draw(client, ["runs/vq"])["results"][0]
    x = mnist_preprocess(draw_ink(STROKES, 336, 336, 22)).astype(np.float32)[None, None]
    run = ws.open_run("runs/vq")
    want = to_uint8(run.reconstruct(x), 255).ravel()
    assert res["discrete"] and np.abs(b64u8(res["recon"]).astype(int) - want).max() <= 1
    assert res["code"] == run.encode(x)[0].tolist() and all(float(v).is_integer() for v in res["code"])
    r = client.get("/api/lab/map", params={"run": "runs/vq"})
    assert r.status_code == 400 and "codebook indices" in r.json()["error"] and "\n" not in r.json()["error"]


def test_pages_render_with_the_nav(client):
    for path, needle in (("/draw", "Draw a digit"), ("/explore", "Explore the code")):
        r = client.get(path)
        assert r.status_code == 200 and needle in r.text and 'href="/explore"' in r.text
        assert "http://" not in r.text and "https://" not in r.text  # nothing from another host
