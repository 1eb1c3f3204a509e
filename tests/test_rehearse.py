"""petseg-bench rehearse: the official lists on the pixels of a smaller real dataset."""

from pathlib import Path

import pytest

from petseg.bench import main as bench_main
from petseg.bench.rehearse import mapping
from petseg.data.dataset import OxfordPetDataset

SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_mapping_keeps_own_pairs_then_takes_the_breed_then_all_in_turn():
    sources = ["Bengal_1", "Bengal_2", "pug_5"]
    names = ["Bengal_1", "Bengal_7", "Bengal_8", "Bengal_9", "pug_1", "Sphynx_1", "Sphynx_2",
             "Sphynx_3", "Sphynx_4"]  # fmt: skip
    assert mapping(names, sources) == {
        "Bengal_1": "Bengal_1",  # its own pair
        "Bengal_7": "Bengal_1", "Bengal_8": "Bengal_2", "Bengal_9": "Bengal_1",  # its breed's
        "pug_1": "pug_5",
        "Sphynx_1": "Bengal_1", "Sphynx_2": "Bengal_2", "Sphynx_3": "pug_5",  # a missing breed
        "Sphynx_4": "Bengal_1",
    }  # fmt: skip


def _official_lists(folder: Path, trainval: list[str], test: list[str]) -> Path:
    folder.mkdir()
    (folder / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in trainval))
    (folder / "test.txt").write_text("".join(f"{n} 2 2 2\n" for n in test))
    return folder


def test_rehearsal_reads_like_a_dataset_with_the_listed_names(synthetic_root, tmp_path, capsys):
    trainval = [f"Bengal_{i}" for i in range(1, 31)] + ["Synthetic_3"]
    test = [f"pug_{i}" for i in range(1, 13)]
    splits = _official_lists(tmp_path / "splits", trainval, test)
    root = tmp_path / "rehearsal"
    argv = ["rehearse", str(root), "--splits", str(splits), "--pixels", str(synthetic_root)]
    assert bench_main(argv) == 0
    assert "31 trainval + 12 test names on" in capsys.readouterr().out
    assert (root / "annotations" / "test.txt").read_text() == (splits / "test.txt").read_text()
    image = root / "images" / "Synthetic_3.jpg"
    assert image.is_symlink() and image.resolve() == synthetic_root / "images" / "Synthetic_3.jpg"
    assert "not data" in (root / "REHEARSAL.md").read_text()
    assert len((root / "rehearsal-mapping.tsv").read_text().splitlines()) == 1 + 43
    for split, n in (("train", 27), ("valid", 4), ("test", 12)):  # every 10th trainval: valid
        dataset = OxfordPetDataset(str(root), split)
        assert len(dataset) == n
        assert dataset.check_files(progress=False) == []
    # the folder now holds a dataset: a second run is refused and changes nothing
    assert bench_main(argv) == 2
    assert "is not empty" in capsys.readouterr().err
    assert image.is_symlink()


def test_a_missing_split_list_is_one_line(synthetic_root, tmp_path, capsys):
    argv = ["rehearse", str(tmp_path / "r"), "--splits", str(tmp_path / "nowhere"),
            "--pixels", str(synthetic_root)]  # fmt: skip
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"petseg-bench rehearse: error: split list not found: {tmp_path}/nowhere/trainval.txt"
    )


def test_the_shared_data_gives_the_full_release_counts(tmp_path):
    splits, pixels = SHARED / "oxford-pet-splits", SHARED / "oxford-pet-large"
    if not (splits / "test.txt").is_file() or not (pixels / "images").is_dir():
        pytest.skip(f"no official lists and real pairs under {SHARED}")
    root = tmp_path / "rehearsal"
    assert (
        bench_main(["rehearse", str(root), "--splits", str(splits), "--pixels", str(pixels)]) == 0
    )
    sizes = {s: len(OxfordPetDataset(str(root), s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 3312, "valid": 368, "test": 3669}
    assert len(list((root / "images").iterdir())) == 7349
