"""gencache.Client against a real gencached on a free loopback port."""
import socket

import numpy as np
import pytest

import gencache

K = "text_embedding/" + "cd" * 32
K2 = "result/" + "ef" * 32


@pytest.fixture
def client(daemon):
    c = gencache.Client(daemon.url)
    yield c
    c.close()


def test_put_get_peek_delete(client):
    assert client.health()
    client.delete(K)
    assert client.get(K) is None and client.peek(K) is None and K not in client
    client.put(K, b"embedding bytes", cost_s=1.5, ttl_s=60, tags=["a", "b"],
               content_type="application/x-test")
    e = client.get(K)
    assert e.bytes() == b"embedding bytes" and len(e) == 15
    m = e.meta
    assert (m["cost_ms"], m["tags"], m["content_type"]) == (1500, ["a", "b"],
                                                            "application/x-test")
    assert 0 < m["ttl_s"] <= 60 and m["tier"] == "mem"
    assert np.asarray(e).tobytes() == b"embedding bytes"
    assert client.peek(K)["cost_ms"] == 1500
    assert client.get_bytes(K) == b"embedding bytes"
    assert client.delete(K) is True and client.delete(K) is False
    assert client.get(K) is None


def test_tensors_round_trip(client):
    torch = pytest.importorskip("torch")
    for x in (np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.arange(-5, 5, dtype=np.int8),
              np.linspace(0, 1, 6, dtype=np.float16).reshape(3, 2)):
        client.put_tensor(K, x, cost_s=0.2)
        y = client.get_tensor(K)
        assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(y, x)
    for t in (torch.randn(3, 5).to(torch.bfloat16), torch.arange(6, dtype=torch.int8),
              torch.randn(2, 2, dtype=torch.float16)):
        client.put_tensor(K, t)
        u = client.get_tensor(K)
        assert isinstance(u, torch.Tensor) and u.dtype == t.dtype and torch.equal(u, t)
    e = client.get(K)
    assert e.dtype == "f16" and e.shape == (2, 2)
    client.put(K, b"plain")
    with pytest.raises(TypeError):
        client.get_tensor(K)


def test_daemon_codecs(client):
    """int8 codecs are applied by the daemon; get_tensor(dtype=) asks it to convert."""
    x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)
    for codec in ("int8", "int8-channel", "int8-group"):
        client.put_tensor(K, x, codec=codec)
        y = client.get_tensor(K)
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.max(np.abs(y - x)) <= 2 / 127 / 2 + 1e-6
        z = client.get_tensor(K, dtype="f16")
        assert z.dtype == np.float16 and z.shape == x.shape
    client.put_tensor(K, x, codec="f16")
    assert client.get(K).dtype == "f16"
    w = client.get_tensor(K, dtype="f32")
    assert w.dtype == np.float32 and np.array_equal(w, x.astype(np.float16).astype(np.float32))


def test_errors_come_back_as_gencache_errors(client, daemon):
    with pytest.raises(gencache.GencacheError) as e:
        client.get("text_embedding/xyz")
    assert e.value.name == "EINVAL" and e.value.status == 400
    assert client.get("nosuchlayer/" + "00" * 32) is None  # a miss, as in-process
    with pytest.raises(gencache.GencacheError) as e:
        client.put("nosuchlayer/" + "00" * 32, b"x")
    assert e.value.status == 404 and e.value.name == "ENOTFOUND"
    with pytest.raises(gencache.GencacheError) as e:
        client.put(K, b"abc", dtype="f32", shape=(2,))  # 8 bytes announced, 3 sent
    assert e.value.status == 400
    with pytest.raises(ValueError):
        client.get("no-slash")
    with pytest.raises(ValueError):
        gencache.Client("ftp://example")
    # nothing listens there: a connection error, not a hang
    dead = gencache.Client("http://127.0.0.1:9", timeout=2)
    with pytest.raises(OSError):
        dead.get(K)


def test_keep_alive_reuses_one_connection(client):
    client.put(K, b"x")
    client.get(K)
    sock = client._local.conn.sock
    assert sock is not None
    for _ in range(20):
        assert client.get_bytes(K) == b"x"
    assert client._local.conn.sock is sock


def test_reconnects_after_the_server_closed_the_connection(client):
    client.put(K, b"y")
    # as if the kept-alive connection had died while idle: the next send fails
    client._local.conn.sock.shutdown(socket.SHUT_RDWR)
    assert client.get_bytes(K) == b"y"


def test_stats_and_keys(client):
    client.put(K, b"z", cost_s=0.5)
    client.get(K)
    s = client.stats()
    assert s["layers"]["text_embedding"]["hits"] >= 1
    assert "mem" in s["tiers"]
    req = {"model": "wan", "prompt": "a  fox", "seed": 3}
    try:
        remote = client.key(req)
    except gencache.GencacheError as e:
        if e.name == "EUNSUPPORTED":
            pytest.skip("this gencached has no POST /v1/keys yet")
        raise
    assert remote == gencache.key(req)
    assert client.key(req, "text_embedding") == gencache.key(req, "text_embedding")
    with pytest.raises(gencache.GencacheError) as e:
        client.key({"model": "wan", "prompt": "x"}, "result")  # no seed: no result key
    assert e.value.name == "EUNCACHEABLE"
    with pytest.raises(gencache.GencacheError) as e:
        client.key({"steps": "many"})
    assert e.value.status == 400


def test_image_paths_are_sent_as_digests(client, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    png = tmp_path / "in.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(png)
    req = {"model": "wan", "image": str(png), "width": 4, "height": 4}
    try:
        remote = client.key(req, "image_latent")
    except gencache.GencacheError as e:
        if e.name == "EUNSUPPORTED":
            pytest.skip("this gencached has no POST /v1/keys yet")
        raise
    assert remote == gencache.key(req, "image_latent")
    assert remote == gencache.key(dict(req, image={"path": str(png)}), "image_latent")


def test_client_get_or_compute(client):
    client.delete(K2)
    calls = []

    def compute():
        calls.append(1)
        return np.full((4, 4), 7, np.float32)

    a, o1 = client.get_or_compute(K2, compute, with_outcome=True)
    b, o2 = client.get_or_compute(K2, compute, with_outcome=True)
    assert (o1, o2) == ("miss", "hit") and len(calls) == 1
    assert np.array_equal(a, b)
    assert client.peek(K2)["cost_ms"] >= 0


def test_invalidate(client):
    client.put(K, b"tagged", tags=["fox"])
    try:
        n = client.invalidate(tag="fox")
    except gencache.GencacheError as e:
        if e.name == "EUNSUPPORTED":
            pytest.skip("this gencached has no POST /v1/invalidate yet")
        raise
    assert n >= 1 and client.get(K) is None
    with pytest.raises(ValueError):
        client.invalidate()
