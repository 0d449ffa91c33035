"""The classic baselines' and AnomalyDINO's published figures, as transcribed (AnoPLe Table 1; AnomalyDINO's
abstract), are data the paper tables can show beside measured rows."""

from fsadbench.reports.paper.published import method_label, published, table_data


def test_anople_table1_baseline_rows():
    t = table_data("anople_table1")
    assert t["shots"] == [1, 2, 4]
    px, im = t["values"]["pixel_auroc"], t["values"]["image_auroc"]
    assert px["mvtec"]["patchcore"] == [[92.0, 1.0], [93.3, 0.6], [94.3, 0.5]]
    assert px["visa"]["padim"] == [[89.9, 0.8], [92.0, 0.7], [93.2, 0.5]]
    assert im["mvtec"]["spade"] == [[81.0, 2.0], [82.9, 2.6], [84.8, 2.5]]
    assert im["mvtec"]["padim"] == [[76.6, 3.1], [78.9, 3.1], [80.4, 2.4]]
    assert im["mvtec"]["patchcore"] == [[83.4, 3.0], [86.3, 3.3], [88.8, 2.6]]
    assert im["visa"]["spade"] == [[79.5, 4.0], [80.7, 5.0], [81.7, 3.4]]
    assert im["visa"]["padim"] == [[62.8, 5.4], [67.4, 5.1], [72.8, 2.9]]
    assert im["visa"]["patchcore"] == [[79.9, 2.9], [81.6, 4.0], [85.3, 2.1]]
    for metric in (px, im):
        for d in ("mvtec", "visa"):
            assert {"spade", "padim", "patchcore"} <= set(metric[d])


def test_anomalydino_abstract_and_labels():
    t = table_data("anomalydino_abstract")
    assert t["metric"] == "image_auroc" and t["values"] == {1: {"anomalydino": {"mvtec": 96.6}}}
    assert "2405.14529" in published()["sources"][t["source"]]
    assert [method_label(m) for m in ("spade", "padim", "patchcore", "anomalydino")] == [
        "SPADE", "PaDiM", "PatchCore", "AnomalyDINO"]
