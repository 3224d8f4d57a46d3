"""Apply a finished study's trained models to a new cohort: predictions, Grad-CAM maps, an external
evaluation where labels exist, and a gallery to browse (docs/apply.md)."""
