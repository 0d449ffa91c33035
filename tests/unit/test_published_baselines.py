"""The classic baselines' and AnomalyDINO's published figures, as transcribed (AnoPLe Table 1; AnomalyDINO's
abstract), are data the paper tables can show beside measured rows."""

from fsadbench.reports.paper.published import method_label, published, table_data


def test_anople_table1_baseline_rows():
    t = table_data("anople_table1")
    cols = [(c["metric"], c["shots"]) for c in t["columns"]]
    assert cols == [("image_auroc", 1), ("image_auroc", 2), ("image_auroc", 4),
                    ("pixel_auroc", 1), ("pixel_auroc", 2), ("pixel_auroc", 4)]
    rows = {r["method"]: r["values"] for r in t["rows"]}
    assert {"spade", "padim", "patchcore"} <= set(rows)
    assert rows["patchcore"]["mvtec"][3:] == [[92.0, 1.0], [93.3, 0.6], [94.3, 0.5]]
    assert rows["padim"]["visa"][3:] == [[89.9, 0.8], [92.0, 0.7], [93.2, 0.5]]
    assert rows["spade"]["mvtec"][:3] == [[81.0, 2.0], [82.9, 2.6], [84.8, 2.5]]
    assert rows["padim"]["mvtec"][:3] == [[76.6, 3.1], [78.9, 3.1], [80.4, 2.4]]
    assert rows["patchcore"]["mvtec"][:3] == [[83.4, 3.0], [86.3, 3.3], [88.8, 2.6]]
    assert rows["spade"]["visa"][:3] == [[79.5, 4.0], [80.7, 5.0], [81.7, 3.4]]
    assert rows["padim"]["visa"][:3] == [[62.8, 5.4], [67.4, 5.1], [72.8, 2.9]]
    assert rows["patchcore"]["visa"][:3] == [[79.9, 2.9], [81.6, 4.0], [85.3, 2.1]]
    for m in ("spade", "padim", "patchcore"):
        for d in ("mvtec", "visa"):
            assert len(rows[m][d]) == 6 and all(v is not None for v in rows[m][d])


def test_anomalydino_abstract_and_labels():
    t = table_data("anomalydino_abstract")
    assert t["metric"] == "image_auroc" and t["values"] == {1: {"anomalydino": {"mvtec": 96.6}}}
    assert "2405.14529" in published()["sources"][t["source"]]
    assert [method_label(m) for m in ("spade", "padim", "patchcore", "anomalydino")] == [
        "SPADE", "PaDiM", "PatchCore", "AnomalyDINO"]
