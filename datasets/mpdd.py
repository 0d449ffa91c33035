"""MPDD, the Metal Parts Defect Detection set (Jezek et al., ICUMT 2021).

MVTec-like tree (``<root>/<cat>/train/good``, ``test/<defect>``,
``ground_truth/<defect>``); a mask is matched by the image's stem with or
without the ``_mask`` suffix, since copies of the release differ on it.
"""

from __future__ import annotations

from typing import ClassVar

from fsadbench.core.types import CategorySplit

from fsadbench.datasets.base import Dataset
from fsadbench.datasets.mvtec import load_mvtec_like

MPDD_LAYOUT = """  <root>/<category>/train/good/000.png
  <root>/<category>/test/good/000.png
  <root>/<category>/test/<defect>/000.png
  <root>/<category>/ground_truth/<defect>/000_mask.png   (or 000.png)
  categories: bracket_black bracket_brown bracket_white connector metal_plate tubes"""


class MPDD(Dataset):
    name = "mpdd"
    categories: ClassVar[tuple[str, ...]] = (
        "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
    dir_names = ("mpdd", "MPDD")
    layout = MPDD_LAYOUT
    #: (train, test) per category as released (888 train; 176 good + 282 defective test images)
    expected_counts: ClassVar[dict[str, tuple[int, int]]] = {
        "bracket_black": (289, 79), "bracket_brown": (185, 77), "bracket_white": (110, 60),
        "connector": (128, 44), "metal_plate": (54, 97), "tubes": (122, 101)}

    def load(self, category: str) -> CategorySplit:
        return load_mvtec_like(self, category, mask_suffixes=("_mask", ""))
