"""bench.stylegan_split: the StyleGAN set split by file, per class 70/15/15, seeded (issue 11)."""
import pandas as pd

from bench.stylegan_split import split_by_file


def files(n_real=60, n_fake=20):
    return pd.DataFrame([(label, f"stylegan/{label.lower()}/{i}.jpg") for label, n in (("REAL", n_real), ("FAKE", n_fake))
                         for i in range(n)], columns=["label", "group"])


def test_every_file_gets_one_split_per_class_in_the_fractions():
    table = files()
    split = split_by_file(table, seed=0)
    assert sorted(split["group"]) == sorted(table["group"])  # each file once
    counts = split.assign(label=split["group"].str.split("/").str[1]).groupby(["label", "split"]).size()
    assert counts.to_dict() == {("fake", "test"): 3, ("fake", "train"): 14, ("fake", "val"): 3,
                                ("real", "test"): 9, ("real", "train"): 42, ("real", "val"): 9}


def test_the_split_depends_on_the_seed_only():
    assert split_by_file(files(), seed=0).equals(split_by_file(files(), seed=0))
    assert not split_by_file(files(), seed=0).equals(split_by_file(files(), seed=1))
