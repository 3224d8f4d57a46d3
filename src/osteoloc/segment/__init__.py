"""Paper B: per-site U-Net osteophyte segmentation on landmark-centred patches.

Modules: `sites` (config -> per-site settings), `patches` (reference length, centres, one affine sample),
`sampling` (balanced selection, augmentation draws), `dataset` (patch sets from the study HDF5), `unet`
(the model), `train`, `evaluate` (detection + Dice), `report` (tables and figures).
"""
