"""MNIST, Fashion-MNIST, CIFAR-10 and image folders read from tiny files in their real on-disk formats, no network."""

from __future__ import annotations

import pickle
import socket
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image

from difflab.data import (
    CIFAR10DataModule,
    DataFacts,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    StepBatchSampler,
    data_facts,
    torchvision_sets,
)
from difflab.data.fake_files import write_cifar10, write_fake, write_image_folder, write_mnist
from difflab.data.images import flip_mask, to_unit_range
from difflab.errors import ConfigError
from difflab.train import train

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

# A few optimizer steps of a small U-Net, through the same code a user runs.
TRAIN = [
    "trainer.max_steps=2", "dataset.batch_size=8", "callbacks.rich_progress_bar=null", "backbone=unet_small",
    "backbone.base_channels=16", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=100", "sampler.steps=2",
]


def closed_port() -> int:
    """A local TCP port nobody listens on (connecting is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the real formats ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_mnist_idx_files_are_read_as_uint8_images(cls, folder, tmp_path):
    raw = write_mnist(tmp_path, folder, num_train=24, num_test=12)
    dm = cls(root=str(tmp_path), download=False, image_size=28)
    dm.setup()
    expected = np.frombuffer((raw / "train-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8).reshape(24, 1, 28, 28)
    assert dm.train_dataset.images.dtype == torch.uint8
    assert torch.equal(dm.train_dataset.images, torch.from_numpy(expected.copy()))
    assert dm.train_dataset.labels.tolist() == [k % 10 for k in range(24)]
    assert len(dm.val_dataset) == 12  # the test split (t10k) is the val split
    x, y = dm.train_dataset.tensors
    assert (x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
            and torch.equal(x, to_unit_range(dm.train_dataset.images)))
    # image_size 32 pads the 28x28 digits with background (-1), keeping every original pixel.
    padded = cls(root=str(tmp_path), download=False, image_size=32)
    real = padded.real_samples("train", 3)
    assert real.shape == (3, 1, 32, 32) and data_facts(padded) == DataFacts((1, 32, 32), num_classes=10, num_bins=256)
    assert torch.equal(real[:, :, 2:30, 2:30], to_unit_range(torch.from_numpy(expected[:3].copy())))
    assert (real[:, :, :2] == -1).all() and (real[:, :, :, 30:] == -1).all()


def test_cifar10_pickled_batches_are_read(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=6, num_test=5)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, verify_md5=False)
    dm.setup()
    assert len(dm.train_dataset) == 30 and len(dm.val_dataset) == 5
    assert data_facts(dm) == DataFacts((3, 32, 32), num_classes=10, num_bins=256)
    with open(folder / "data_batch_2", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    first = torch.from_numpy(entry["data"][0].reshape(3, 32, 32))  # rows hold the R, G, B planes
    assert torch.equal(dm.train_dataset.images[6], first)
    assert dm.train_dataset.labels[6:12].tolist() == entry["labels"]
    # The default checks torchvision's md5 sums: hand-written files are refused, naming them.
    with pytest.raises(ValueError, match="data_batch_1.*md5.*verify_md5=false"):
        CIFAR10DataModule(root=str(tmp_path), download=False)


# -- missing files: one clear error before any training ----------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_offline_fail_fast_naming_the_directory(name, tmp_path, monkeypatch, hydra_cleanup):
    monkeypatch.setitem(torchvision_sets.DOWNLOAD_HOSTS, name, ("127.0.0.1", closed_port()))
    root = tmp_path / "nothing_here"
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        torchvision_sets.__dict__[{"mnist": "MNISTDataModule", "fashion_mnist": "FashionMNISTDataModule",
                                   "cifar10": "CIFAR10DataModule"}[name]](root=str(root), download=True)
    assert time.perf_counter() - start < 10
    message = str(err.value)
    expected = "data_batch_1" if name == "cifar10" else "train-images-idx3-ubyte"
    assert (str(root) in message and expected in message and "cannot be reached" in message
            and "download=true" in message)
    # The same through difflab-train: a one-line config error before the trainer exists.
    cfg = compose_config("train", [f"dataset={name}", f"dataset.root={root}", *TRAIN], tmp_path / "run")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=str(root)):
        train(cfg)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_files_without_download_list_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        MNISTDataModule(root=str(tmp_path), download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)
    assert all(f in str(err.value) for f in MNIST_FILES)
    raw = write_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw lacks t10k-labels-idx1-ubyte \(expected files: "):
        MNISTDataModule(root=str(tmp_path), download=False)


def test_download_runs_when_the_host_answers(tmp_path, monkeypatch):
    with socket.socket() as server:  # a listening local socket stands in for the download host
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setitem(torchvision_sets.DOWNLOAD_HOSTS, "mnist", server.getsockname())
        fetched = []
        monkeypatch.setattr(MNISTDataModule, "fetch", lambda self: fetched.append(write_mnist(self.root)))
        dm = MNISTDataModule(root=str(tmp_path), download=True)
    assert len(fetched) == 1 and dm.real_samples("val").shape == (16, 1, 32, 32)


def test_bad_arguments_name_the_key(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"dataset.image_size=20 must be an integer >= 28"):
        MNISTDataModule(root=str(tmp_path), image_size=20)
    with pytest.raises(ValueError, match=r"dataset.hflip='yes'"):
        MNISTDataModule(root=str(tmp_path), hflip="yes")
    with pytest.raises(ValueError, match=r"dataset.prefetch_factor=0"):
        MNISTDataModule(root=str(tmp_path), prefetch_factor=0)


# -- image folders -----------------------------------------------------------------------------------------------
def test_image_folder_labels_modes_and_bad_files(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("cats", "dogs"), per_class=10, bad_files=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = ImageFolderDataModule(root=str(root), image_size=16, channels=3, batch_size=4)
    skipped = [w for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1 and "skipped 2 of 22" in str(skipped[0].message)
    assert dm.classes == ["cats", "dogs"] and data_facts(dm) == DataFacts((3, 16, 16), num_classes=2, num_bins=256)
    assert dm.images.shape == (20, 3, 16, 16) and dm.images.dtype == torch.uint8
    assert dm.labels.tolist() == [0] * 10 + [1] * 10
    dm.setup()
    assert len(dm.train_dataset) + len(dm.val_dataset) == 20 and len(dm.val_dataset) == 1
    with pytest.warns(UserWarning, match="skipped 2"):
        gray = ImageFolderDataModule(root=str(root), image_size=8, channels=1, batch_size=4)
    assert gray.images.shape == (20, 1, 8, 8) and gray.data_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="notes.txt"):  # the first bad file, in sorted order
        ImageFolderDataModule(root=str(root), strict=True)


def test_image_folder_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)  # 64 wide, 32 high: red | green | blue | white quarters
    for q, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        pixels[:, 16 * q:16 * (q + 1)] = colour
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, val_fraction=0.0)
    assert dm.num_classes is None and dm.classes == []  # a flat folder: unlabelled
    image = dm.images[0]  # resized to 32x16, centre 16 columns: green | blue
    assert image.shape == (3, 16, 16)
    assert image[:, 8, 2].tolist() == [0, 255, 0] and image[:, 8, 13].tolist() == [0, 0, 255]


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        ImageFolderDataModule(root=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'empty'}.*no files"):
        ImageFolderDataModule(root=str(tmp_path / "empty"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"not a png")
    (tmp_path / "junk" / "b.txt").write_text("text")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'junk'}.*none of its 2 file"):
            ImageFolderDataModule(root=str(tmp_path / "junk"))
    with pytest.raises(ValueError, match="dataset.root=None"):
        ImageFolderDataModule(root=None)


# -- flips: a pure function of (seed, step, rank, position) -------------------------------------------------------
def take(loader, n: int) -> list[torch.Tensor]:
    it = iter(loader)
    return [next(it)[0] for _ in range(n)]


def test_flipped_batches_depend_only_on_seed_step_and_rank(tmp_path):
    write_cifar10(tmp_path, per_batch=8, num_test=4)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, verify_md5=False, hflip=True, batch_size=4, seed=3)
    dm.setup()
    torch.manual_seed(0)
    first = take(dm.train_dataloader(), 6)
    torch.manual_seed(12345)  # other global RNG state: the same batches
    assert all(torch.equal(a, b) for a, b in zip(first, take(dm.train_dataloader(), 6)))
    # A run resumed at step 3 sees the batches of steps 3..5.
    resumed = StepBatchSampler(len(dm.train_dataset), 4, seed=3, start_step=3, with_step=True)
    loader = torch.utils.data.DataLoader(dm.train_dataset, batch_sampler=resumed)
    assert all(torch.equal(a, b) for a, b in zip(first[3:], take(loader, 3)))
    # DataLoader workers receive the step with the indices: the same batches.
    dm.num_workers = 2
    assert all(torch.equal(a, b) for a, b in zip(first, take(dm.train_dataloader(), 6)))
    # Each image is the stored one, mirrored exactly where flip_mask says.
    sampler = dm.train_sampler()
    flipped = 0
    for step, batch in enumerate(first):
        plain = to_unit_range(dm.train_dataset.images[sampler.batch_at(step)])
        mask = flip_mask(3, step, 0, 4)
        assert torch.equal(batch, torch.where(mask[:, None, None, None], plain.flip(-1), plain))
        flipped += int(mask.sum())
    assert 0 < flipped < 24
    # Never flipped: validation batches, reference samples, hflip=false.
    assert torch.equal(next(iter(dm.val_dataloader()))[0], to_unit_range(dm.val_dataset.images))
    assert torch.equal(dm.real_samples("train"), to_unit_range(dm.train_dataset.images))
    plain_dm = CIFAR10DataModule(root=str(tmp_path), download=False, verify_md5=False, hflip=False, batch_size=4,
                                 seed=3)
    unflipped = take(plain_dm.train_dataloader(), 2)
    assert torch.equal(unflipped[0], to_unit_range(plain_dm.train_dataset.images[sampler.batch_at(0)]))


# -- training through difflab-train's code -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "image_folder"])
def test_trains_a_few_steps(name, tmp_path, hydra_cleanup, one_thread):
    root = write_fake(name, tmp_path / "data")
    extra = {"cifar10": ["dataset.verify_md5=false"],
             "image_folder": ["dataset.hflip=true", "conditioning.enabled=true"]}.get(name, [])
    cfg = compose_config("train", [f"dataset={name}", f"dataset.root={root}", *TRAIN, *extra], tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 2
    channels, size = {"cifar10": (3, 32), "image_folder": (3, 32)}.get(name, (1, 32))
    expected = {"shape": [channels, size, size], "num_classes": 2 if name == "image_folder" else 10, "num_bins": 256}
    assert ckpt["difflab"]["config"]["data"] == expected  # the data module's facts, recorded with the run's config


def test_resume_with_flips_matches_the_uninterrupted_run(tmp_path, hydra_cleanup, one_thread):
    root = write_fake("cifar10", tmp_path / "data")
    overrides = ["dataset=cifar10", f"dataset.root={root}", "dataset.verify_md5=false", "dataset.hflip=true", *TRAIN,
                 "trainer.max_steps=4", "backbone.dropout=0.0", "ema.decay=0.9", "optim.warmup_steps=2"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train(compose_config("train", overrides, full))
    train(compose_config("train", [*overrides, f"ckpt_path={full / 'checkpoints' / 'step_0000002.ckpt'}"], resumed))
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
