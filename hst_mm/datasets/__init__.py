"""Checks of a data set before and while training, so that bad data stops with the file's
name and the problem instead of a traceback from deep inside a loss or a loader.

* :mod:`.seg_labels`: ``CheckSegLabels``, a pipeline step for segmentation label maps
  (registered by ``import hst_mm``; imports mmengine and numpy);
* :mod:`.coco_check`: checks of a COCO annotation file (json and the standard library only;
  ``tools/check_coco.py`` and ``tools/train.py`` run it);
* :mod:`.coco_check_cache`: its verdicts, cached per unchanged file (standard library).

Nothing is imported here, so that :mod:`.coco_check` works without mmengine.
"""
