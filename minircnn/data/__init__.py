"""Synthetic datasets: shapes detection (ShapesDataset), classification, COCO export."""

from minircnn.data.shapes import (
    CLASSES,
    ShapesClassification,
    ShapesDataset,
    export_dataset,
    to_coco,
)
