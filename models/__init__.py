"""Segmentation network definition, training, export, manifest and runtime backends."""
