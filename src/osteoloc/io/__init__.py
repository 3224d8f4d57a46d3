"""Readers and writers for the formats the study meets (DICOM, BoneFinder .pts, labels, HDF5)."""
