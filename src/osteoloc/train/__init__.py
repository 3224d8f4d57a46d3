"""The training stage of paper A: `arms` (study arms as settings), `splits` (per-seed splits), `data`
(a split in memory, batches, augmentation), `model` (ResNet-18 and its loading), `prior` (the landmark
prior's penalty and loss), `loop` (one training run), `grid` (the prior's grid search), `device`.
"""
