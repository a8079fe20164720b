"""Data sets described as data, and the errors every layer shares.

The bottom layer: nothing here imports another package of this project, so
`models/`, `components/`, `serving/` and `pipeline/` can all depend on it.
"""
