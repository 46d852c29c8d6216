"""planners: fingerprint, topology, memory estimate, planner, splits, the plan-and-preprocess stage.

Nothing is imported here. ``CONFIGURATION`` lives here rather than in ``planner`` (which re-exports it) because the
prediction runtime needs the name without the planner's torch-based memory estimate.
"""

CONFIGURATION = "3d_fullres"
"""The one configuration that is planned and trained (nnU-Net's ``3d_fullres``)."""
