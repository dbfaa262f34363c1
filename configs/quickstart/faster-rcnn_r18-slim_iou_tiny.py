_base_ = './_base_/faster-rcnn_r18-slim_tiny.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# The IoU baseline on tiny objects: mmdet's MaxIoU assigners, SmoothL1/L1 losses and
# IoU-NMS, unchanged (compare with faster-rcnn_r18-slim_nwd_tiny.py and _nwd-rka_tiny.py).
