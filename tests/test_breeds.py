"""Breeds: names to breeds and species, the breed-spread train subset, held-out breeds, and the
per-breed report."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from petseg.data import PetDataModule
from petseg.data.breeds import breed_of, read_species, spread_subset
from petseg.data.synthetic import make_sample
from petseg.errors import PetsegError
from petseg.evaluation import Evaluation
from petseg.report import per_breed, print_weakest, write_rows

# breed -> (species code, trainval images, test images)
BREEDS = {"Bengal": ("1", 20, 3), "american_bulldog": ("2", 40, 3), "pug": ("2", 10, 2)}


@pytest.fixture(scope="module")
def breed_root(tmp_path_factory) -> Path:
    """A tiny dataset in the official layout with three breeds of unequal sizes."""
    root = tmp_path_factory.mktemp("breeds")
    (root / "images").mkdir()
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for breed, (species, n_trainval, n_test) in BREEDS.items():
        for i in range(n_trainval + n_test):
            name = f"{breed}_{i + 1}"
            image, trimap = make_sample(rng, 40, 40)
            image.save(root / "images" / f"{name}.jpg")
            trimap.save(root / "annotations" / "trimaps" / f"{name}.png")
            split = "trainval" if i < n_trainval else "test"
            lines[split].append(f"{name} 1 {species} 1")
    for split, rows in lines.items():  # interleave the breeds, as the official lists are not
        rng.shuffle(rows)
        (root / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def test_breed_of_strips_the_number_only():
    assert breed_of("american_bulldog_12") == "american_bulldog"
    assert breed_of("Bengal_1") == "Bengal"
    assert breed_of("great_pyrenees") == "great_pyrenees"  # no number: the name itself


def test_species_come_from_the_lists(breed_root):
    assert read_species(breed_root) == {"Bengal": "cat", "american_bulldog": "dog", "pug": "dog"}


def test_spread_subset_is_proportional_nested_and_in_list_order():
    names = [f"a_{i}" for i in range(60)] + [f"b_{i}" for i in range(30)] + ["c_1", "c_2"]
    for limit in (3, 10, 45, 92):
        subset = spread_subset(names, limit)
        assert len(subset) == limit
        assert subset == [n for n in names if n in set(subset)]  # list order kept
    counts = Counter(breed_of(n) for n in spread_subset(names, 45))
    assert abs(counts["a"] - 2 * counts["b"]) <= 2 and counts["c"] == 1  # shares kept
    assert set(spread_subset(names, 10)) <= set(spread_subset(names, 30))  # nested


def test_train_limit_cuts_train_only(breed_root):
    full = PetDataModule(str(breed_root), image_size=32, num_workers=0)
    full.setup("fit")
    limited = PetDataModule(str(breed_root), image_size=32, num_workers=0, train_limit=20)
    limited.setup("fit")
    assert len(limited.datasets["train"]) == 20 < len(full.datasets["train"])
    assert limited.datasets["valid"].names == full.datasets["valid"].names
    assert set(limited.datasets["train"].names) <= set(full.datasets["train"].names)
    breeds = Counter(breed_of(n) for n in limited.datasets["train"].names)
    assert set(breeds) == set(BREEDS)  # every breed keeps a share
    too_many = PetDataModule(str(breed_root), image_size=32, num_workers=0, train_limit=1000)
    with pytest.raises(PetsegError, match="train_limit 1000 is more than the 63 train images"):
        too_many.setup("fit")


def test_holdout_breeds_leave_train_and_valid_but_not_test(breed_root):
    data = PetDataModule(str(breed_root), image_size=32, num_workers=0, holdout_breeds=["pug"])
    data.setup(None)
    for split in ("train", "valid"):
        assert "pug" not in {breed_of(n) for n in data.datasets[split].names}
    assert "pug" in {breed_of(n) for n in data.datasets["test"].names}
    typo = PetDataModule(str(breed_root), image_size=32, num_workers=0, holdout_breeds=["Pug"])
    with pytest.raises(PetsegError, match=r"unknown breed.*Pug.*Bengal, american_bulldog, pug"):
        typo.setup("fit")


def test_per_breed_rows_and_the_weakest_line(tmp_path, capsys):
    names = ["Bengal_1", "Bengal_2", "pug_1", "pug_2", "pug_3"]
    dice = [0.9, 0.7, 0.5, 0.6, 0.4]
    evaluation = Evaluation(
        summary={}, per_image={"name": names, "dice": dice, "iou": [d / 2 for d in dice]}
    )
    rows = per_breed(evaluation, {"Bengal": "cat", "pug": "dog"})
    assert [r["breed"] for r in rows] == ["pug", "Bengal"]  # weakest first
    assert rows[0]["dice"] == pytest.approx(0.5) and rows[0]["images"] == 3
    assert (rows[0]["worst_image"], rows[0]["worst_dice"]) == ("pug_3", 0.4)
    assert rows[1]["species"] == "cat" and rows[1]["iou"] == pytest.approx(0.4)
    print_weakest(rows)
    assert (
        "weakest breeds     pug 0.500 (3), Bengal 0.800 (2)  (mean dice, images; of 2 breeds)"
        in (capsys.readouterr().out)
    )
    many = [{"breed": b, "images": n, "dice": d} for b, n, d in
            (("a", 1, 0.1), ("b", 9, 0.5), ("c", 1, 0.6), ("d", 7, 0.7))]  # fmt: skip
    print_weakest(many)  # the one-image breeds are left out of the line, not of the table
    assert "weakest breeds     b 0.500 (9), d 0.700 (7)  (mean dice, images; of the 2 breeds " in (
        capsys.readouterr().out
    )
    write_rows(tmp_path / "per_breed.csv", rows)
    with (tmp_path / "per_breed.csv").open() as f:
        table = list(csv.DictReader(f))
    assert table[0]["breed"] == "pug" and float(table[0]["dice"]) == pytest.approx(0.5)
