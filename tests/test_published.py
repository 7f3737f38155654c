"""results/published/*.csv: schema, and numbers checked against the paper texts they were read from."""

from __future__ import annotations

import re

import pytest

from bench.errors import DataError
from bench.published import COLUMNS as PUBLISHED_COLUMNS
from bench.published import load as load_published

QSATTN = "papers/003_70dc1fbe279e645e.txt"
BICYCLEGAN = "papers/002_f436f4843dc3a255.txt"
METHODS_MD = "reference/methods.md"


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])\d+\.\d+|(?<![\w.])\d+(?![\w.])", line)]


def _row(text: str, label: str) -> list[float]:
    """The numbers of the pipe-table line that starts with `label` (first match)."""
    for line in text.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if cells and cells[0].replace("\\cdashline1-9 ", "").replace("\\cdashline1-8 ", "") == label:
            return [float(c.strip("*")) for c in cells[1:] if re.fullmatch(r"\*{0,2}\d+(\.\d+)?\*{0,2}", c)]
    raise AssertionError(f"no table line starting with {label!r}")


def test_schema_and_coverage():
    pub = load_published()
    assert tuple(pub.columns) == PUBLISHED_COLUMNS
    assert set(pub["paper"]) == {"qsattn2022", "dclgan2021", "bicyclegan2017", "nicegan2020", "cut2020"}
    assert set(pub[pub["paper"] == "qsattn2022"]["table"]) == {"1", "2", "3", "4", "5"}
    assert set(pub[pub["paper"] == "dclgan2021"]["table"]) == {"1", "2", "3", "4"}
    assert (pub["source"].str.len() > 10).all()
    # Every row uses a dataset of the registry (or a CycleGAN set bench does not ship, or 'any').
    from bench.data.registry import DATASETS

    assert set(pub["dataset"]) <= set(DATASETS) | {"vangogh2photo", "apple2orange", "summer2winter_yosemite",
                                                    "drit_cat2dog", "any"}
    assert len(pub[(pub["paper"] == "qsattn2022") & (pub["table"] == "1")]) == 7 * 8


def test_qsattn_numbers_match_the_paper_text(fixtures_dir):
    text = (fixtures_dir / QSATTN).read_text(encoding="utf-8")
    pub = load_published(paper="qsattn2022")
    # Table 1 columns: Cityscapes mAP, pixAcc, classAcc, FID | Cat->Dog SWD, FID | Horse->Zebra SWD, FID.
    order = [("cityscapes", "miou"), ("cityscapes", "pixel_acc"), ("cityscapes", "class_acc"), ("cityscapes", "fid"),
             ("afhq", "swd"), ("afhq", "fid"), ("horse2zebra", "swd"), ("horse2zebra", "fid")]
    for label, method in (("CycleGAN", "cyclegan"), ("CUT", "cut"), ("FSeSim", "fsesim"),
                          ("QS-Attn(Global)", "qsattn_global"), ("QS-Attn(Local+Global)", "qsattn_local_global")):
        t1 = pub[(pub["table"] == "1") & (pub["method"] == method)].set_index(["dataset", "metric"])["value"]
        assert [t1[k] for k in order] == _row(text, label), label
    t3 = pub[pub["table"] == "3"]
    for variant in "ABCDEFGH":
        rows = t3[t3["variant"].str.startswith(variant + ":")].set_index("metric")["value"]
        label = "F: info" if variant == "F" else variant  # the text labels the Informer row "F: info"
        assert [rows["fid"], rows["swd"]] == _row(text, label), variant
    t5 = pub[(pub["table"] == "5") & (pub["method"] == "qsattn_global") & (pub["metric"] == "fid")]
    assert dict(zip(t5["setting"], t5["value"])) == {"num_patches=64": 47.9, "num_patches=128": 40.9,
                                                     "num_patches=256": 41.1, "num_patches=512": 45.6}
    assert "QS-Attn | 64 | 47.9 | 30.1 |" in text and "CUT | 53.5 | 32.8 |" in text
    cut512 = pub[(pub["table"] == "5") & (pub["method"] == "cut") & (pub["setting"] == "num_patches=512")]
    assert dict(zip(cut512["metric"], cut512["value"])) == {"fid": 53.5, "swd": 32.8}
    user = pub[(pub["table"] == "2") & (pub["method"] == "qsattn_global")].set_index("metric")["value"]
    assert "Q(%) | 45.0 | 28.3 | 13.3 | 13.3 |" in text and user["user_quality"] == 45.0


def test_dclgan_numbers_match_methods_md(fixtures_dir):
    text = (fixtures_dir / METHODS_MD).read_text(encoding="utf-8")
    section = text[text.index("### 5.1"):text.index("### 5.2")]
    pub = load_published(paper="dclgan2021")
    t1 = pub[pub["table"] == "1"]
    for label, method in (("CycleGAN", "cyclegan"), ("CUT", "cut"), ("DCLGAN", "dclgan"), ("SimDCL", "simdcl"),
                          ("DRIT", "drit")):
        rows = t1[t1["method"] == method].set_index(["dataset", "metric"])["value"]
        got = [rows[("cityscapes", "fid")], rows[("afhq", "fid")], rows[("horse2zebra", "fid")],
               rows[("any", "sec_per_iter")]]
        assert got == _row(section, label), label
    z2h = pub[(pub["table"] == "2") & (pub["direction"] == "zebra2horse")].set_index("method")["value"]
    assert "Zebra→Horse FID: CycleGAN 154.3, CUT 170.5, DCLGAN 139.5, SimDCL 152.5" in section
    assert [z2h["cyclegan"], z2h["cut"], z2h["dclgan"], z2h["simdcl"]] == [154.3, 170.5, 139.5, 152.5]
    fcn = pub[(pub["table"] == "3") & (pub["method"] == "ground_truth")].set_index("metric")["value"]
    assert "Ground truth 0.80/0.26/0.21" in section
    assert [fcn["pixel_acc"], fcn["class_acc"], fcn["miou"]] == [0.80, 0.26, 0.21]
    abl = pub[(pub["table"] == "4") & pub["variant"].str.startswith("II:")].set_index("direction")["value"]
    assert "II (external negatives) 41.7/149.2/49.6" in section
    assert [abl["horse2zebra"], abl["zebra2horse"], abl["label2photo"]] == [41.7, 149.2, 49.6]


def test_bicyclegan_number_matches_the_paper_text(fixtures_dir):
    text = (fixtures_dir / BICYCLEGAN).read_text(encoding="utf-8")
    pub = load_published(paper="bicyclegan2017")
    row = pub[pub["table"] == "Sec. 5.2"].iloc[0]
    assert row["metric"] == "lpips_diversity" and row["value"] == 0.262
    assert "produce an average variation of .262" in text
    # Table 1 is an image in this text (its caption says what it measures): the numbers come from the poster.
    assert "Table 1: The encoding performance" in text and "reconstruction loss" in text
    t1 = pub[pub["table"] == "1"]
    assert len(t1) == 8 and set(t1["metric"]) == {"recon_l1"} and "0.292" not in text
    assert t1["protocol_note"].str.startswith("read off an image").all()
    # Every setting is a bench switch of BicycleGAN (the encoder and where z is added), so `bench reproduce` runs it.
    from methods.bicyclegan import BicycleGANConfig
    from bench.published import parse_setting

    for setting in t1["setting"]:
        assert set(parse_setting(setting)) <= set(BicycleGANConfig.__dataclass_fields__)


def test_every_row_cites_a_paper_and_no_internal_file():
    pub = load_published()
    for source in set(pub["source"]):
        assert re.search(r"arXiv \d{4}\.\d{5}", source), source
        assert not re.search(r"shared/|reference/|methods\.md|papers/0\d\d_", source), source
    # A number read off a picture says so.
    read_off = pub[pub["source"].str.contains("read off")]
    assert len(read_off) and read_off["protocol_note"].str.contains("read off an image").all()


def test_nicegan_tables_agree_with_each_other_and_with_benchs_counts():
    """The comparison and ablation tables were read from separate pictures: their shared rows must agree."""
    pub = load_published(paper="nicegan2020")
    comp = pub[pub["table"] == "comparison"]
    assert len(comp) == 7 * 8 * 2  # 7 methods x 8 directions x (FID, KIDx100)
    abl = pub[pub["table"] == "ablation"]

    def val(frame, method, direction, metric, variant=None):
        sel = frame[(frame["method"] == method) & (frame["direction"] == direction) & (frame["metric"] == metric)]
        if variant:
            sel = sel[sel["variant"].str.startswith(variant)]
        (v,) = sel["value"]
        return v

    for direction in ("dog2cat", "cat2dog"):
        for metric in ("fid", "kid"):
            # Full model (row 5) = NICE-GAN; no NICE and no RA (row 1) = U-GAT-IT-light.
            assert val(abl, "nicegan_light", direction, metric, "row 5:") == val(comp, "nicegan_light", direction, metric)
            assert val(abl, "nicegan_light", direction, metric, "row 1:") == val(comp, "ugatit_light", direction, metric)
    # The parameter table is of the light model: bench counts 2 x 8,104,640 (G) and 109,958,146 in all
    # (tests/test_method_nicegan.py instantiates them).
    params = pub[pub["table"] == "params"].set_index("variant")["value"]
    assert params["NICE-GAN generators"] == round(2 * 8_104_640 / 1e6, 1)
    assert params["NICE-GAN discriminators"] == round((109_958_146 - 2 * 8_104_640) / 1e6, 1)
    assert set(pub["unit"][pub["metric"] == "kid"]) == {"×100"}


def test_cut_rows_agree_with_the_reprints_in_other_papers():
    pub = load_published(method=["cut", "fastcut"], metric="fid")
    own = pub[pub["paper"] == "cut2020"]
    assert len(own) == 4
    for row in own.to_dict("records"):
        copies = pub[(pub["paper"] != "cut2020") & (pub["method"] == row["method"]) & (pub["setting"] == "")
                     & (pub["dataset"] == row["dataset"]) & (pub["direction"] == row["direction"])]
        assert len(copies) and set(copies["value"]) == {row["value"]}, row


def test_filters():
    fid = load_published("fid", dataset="horse2zebra", method="cut")
    assert set(fid["metric"]) == {"fid"} and set(fid["dataset"]) == {"horse2zebra"}
    assert 45.5 in set(fid["value"])


@pytest.mark.parametrize("bad, message", [
    ("metric=fdi", "unknown metric 'fdi'"),
    ("value=abc", "not a number"),
    ("unit=percent", "unit 'percent'"),
    ("setting=num_patches", "not key=value"),
    ("source=", "empty 'source'"),
    ("duplicate", "duplicate published entry"),
])
def test_validation_names_file_and_row(tmp_path, bad, message):
    header = ",".join(PUBLISHED_COLUMNS)
    good = {"paper": "p", "table": "1", "method": "cut", "variant": "", "setting": "", "dataset": "toy",
            "direction": "circles2squares", "metric": "fid", "unit": "", "value": "1.5", "protocol_note": "",
            "source": "a paper Table 1"}
    rows = [dict(good)]
    if bad == "duplicate":
        rows.append(dict(good))
    else:
        key, value = bad.split("=", 1)
        rows[0][key] = value
    (tmp_path / "x.csv").write_text(header + "\n" + "\n".join(",".join(r[c] for c in PUBLISHED_COLUMNS)
                                                               for r in rows) + "\n")
    with pytest.raises(DataError, match=re.escape(message)) as info:
        load_published(path=tmp_path)
    assert "x.csv" in str(info.value) or bad == "duplicate"
    with pytest.raises(DataError, match="no published-number CSVs"):
        load_published(path=tmp_path / "empty")
