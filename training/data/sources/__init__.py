"""One module per source of `clipping-edge data prepare`; the registry is `training/data/prepare.py`."""
