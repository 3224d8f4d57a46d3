"""The phantom cohort: bilateral AP pelvis radiographs with BoneFinder points, grades and lesion truth.

Modules: anatomy (hip outlines and the 80 points), lesions (osteophytes), labels (grades and labels.csv),
render (rasterising a scene), dicom (writing DICOM variants), cohort (the whole cohort on disk, by shards).
"""
