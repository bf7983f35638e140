# Mask R-CNN + HST with a ViT-L/16 IN-21K trunk (timm `vit_large_patch16_224.augreg_in21k`,
# 24 blocks, D=1024), 1x schedule; the ViT-B config's recipe otherwise.
# The paper gives neither the side network's widths for ViT-L nor how 24 trunk blocks feed
# 4 stages. Here (choices):
# * widths (64, 128, 256, 384) and heads (2, 4, 8, 12), the paper's dense setting: the side
#   network stays the same size and only the T-Bridge's input width grows (D=1024);
# * all 24 blocks feed the side network, split evenly in order: blocks 0-5 stage 1, 6-11
#   stage 2, 12-17 stage 3, 18-23 stage 4, one Side Block per trunk block (24 Side Blocks).
#   The authors' classification code would feed only blocks 0-11 of a deeper trunk; with
#   the side network reading every block, the frozen trunk's last 12 blocks, whose features
#   are the most semantic, are not computed for nothing, and the layout is the paper's
#   (one Side Block and one meta token per trunk block) at any depth.
_base_ = ['./mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py']

model = dict(backbone=dict(trunk='vit_large_patch16_224', pretrained='augreg_in21k'))
