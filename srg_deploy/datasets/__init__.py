"""Datasets in the layout the scene-graph field uses (VG-SGG), a generator of small ones, and the field's metrics.

numpy + h5py + OpenCV only: the reader and the metrics run where the deployed runtime runs, without PyTorch.
"""

from srg_deploy.datasets.sgg_eval import Prediction, SGGEvaluator, boxes_prediction, object_scores
from srg_deploy.datasets.vg_sgg import SGGImage, VGSGGDataset

__all__ = ["Prediction", "SGGEvaluator", "SGGImage", "VGSGGDataset", "boxes_prediction", "object_scores"]
