"""A user's own data in an MVTec-like tree, categories discovered on disk.

    <root>/<cat>/train/good/*            normal images (the k-shot pool)
    <root>/<cat>/test/good/*             normal test images
    <root>/<cat>/test/<any>/*            anomalous test images (folder name = defect type)
    <root>/<cat>/ground_truth/<any>/*    optional masks, matched by stem (with or without "_mask")

An anomalous image without a mask is kept with ``mask_path=None``: it counts
for image-level metrics only. Any image extension of ``IMAGE_EXTENSIONS``.
"""

from __future__ import annotations

from pathlib import Path

from fsadbench.core.errors import DataError
from fsadbench.core.types import CategorySplit

from fsadbench.datasets.base import Dataset
from fsadbench.datasets.mvtec import load_mvtec_like

FOLDER_LAYOUT = """  <root>/<category>/train/good/<image>
  <root>/<category>/test/good/<image>
  <root>/<category>/test/<defect>/<image>
  <root>/<category>/ground_truth/<defect>/<image stem>[_mask].png   (optional)"""


class FolderDataset(Dataset):
    name = "folder"
    layout = FOLDER_LAYOUT

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        return folder.is_dir() and any((c / "test").is_dir() for c in folder.iterdir() if c.is_dir())

    def list_categories(self) -> list[str]:
        root = self.require_root()
        cats = sorted(c.name for c in root.iterdir() if c.is_dir() and (c / "test").is_dir())
        if not cats:
            raise DataError(f"dataset 'folder': no category folder with a test/ subfolder under {root}. "
                            f"Expected layout:\n{self.layout}")
        return cats

    def load(self, category: str) -> CategorySplit:
        return load_mvtec_like(self, category, mask_suffixes=("_mask", ""), require_masks=False)
