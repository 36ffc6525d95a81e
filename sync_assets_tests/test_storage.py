import polars as pl
import pytest
from pydantic import BaseModel

from sync_assets.storage import StateStore


class Note(BaseModel):
    text: str
    count: int


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path) -> StateStore:
    if request.param == "local":
        return StateStore(tmp_path / "state")
    return StateStore(f"memory://state-{tmp_path.name}")


def test_bytes_round_trip_and_listing(store: StateStore) -> None:
    assert not store.exists("a/b.bin")
    store.write_bytes("a/b.bin", b"\x00\xffdata")
    store.write_bytes("a/c.bin", b"")
    assert store.exists("a/b.bin")
    assert store.read_bytes("a/b.bin") == b"\x00\xffdata"
    assert store.list_names("a") == ["b.bin", "c.bin"]
    assert store.list_names("missing") == []
    assert store.size("a/b.bin") == 6


def test_parquet_and_json_round_trip(store: StateStore) -> None:
    frame = pl.DataFrame({"k": ["x", "日本", None], "v": [1, 2, 3]})
    store.write_parquet("t/f.parquet", frame)
    assert store.read_parquet("t/f.parquet").equals(frame)
    assert store.read_parquet("t/f.parquet", columns=["v"]).columns == ["v"]
    assert store.scan_parquet(["t/f.parquet", "t/f.parquet"]).collect().height == 6
    store.write_parquet("t/g.parquet", frame, compression="lz4")
    assert store.read_parquet("t/g.parquet").equals(frame)
    store.write_json("t/n.json", Note(text='a "quoted"\nline', count=3))
    assert store.read_json("t/n.json", Note) == Note(text='a "quoted"\nline', count=3)


def test_overwrite_and_delete(store: StateStore) -> None:
    store.write_bytes("x/one", b"old")
    store.write_bytes("x/one", b"new")
    assert store.read_bytes("x/one") == b"new"
    store.delete("x")
    assert not store.exists("x/one")
    store.delete("x")  # deleting what is gone is fine


def test_local_writes_are_atomic(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.write_bytes("f.bin", b"complete")

    def fail_halfway(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store._replace_atomically(str(tmp_path / "f.bin"), fail_halfway)
    assert store.read_bytes("f.bin") == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary left


def test_repr_does_not_show_options(tmp_path) -> None:
    store = StateStore(str(tmp_path), auto_mkdir=True)
    assert repr(store) == f"StateStore({str(tmp_path)!r})"
    assert store.is_local
    assert store.local_path("a/b") == tmp_path / "a" / "b"
    url = StateStore("memory://somewhere").url("a/b")
    assert url.startswith("memory://") and url.endswith("/somewhere/a/b")
    with pytest.raises(ValueError, match="not on the local disk"):
        StateStore("memory://somewhere").local_path("a")


def test_parts_are_written_as_one_parquet_file(store: StateStore) -> None:
    parts = [
        pl.DataFrame({"k": ["x", "日本"], "v": [1, 2]}),
        pl.DataFrame({"k": [None], "v": [3]}, schema={"k": pl.String, "v": pl.Int64}),
        pl.DataFrame({"k": ["a long text " * 20], "v": [4]}),
    ]
    store.write_parquet_parts("t/parts.parquet", iter(parts))
    assert store.read_parquet("t/parts.parquet").equals(pl.concat(parts))
    store.write_parquet_parts("t/one.parquet", iter(parts[:1]), compression="lz4")
    assert store.read_parquet("t/one.parquet").equals(parts[0])
    with pytest.raises(ValueError, match="not even an empty frame"):
        store.write_parquet_parts("t/none.parquet", iter([]))
    assert not store.exists("t/none.parquet")
