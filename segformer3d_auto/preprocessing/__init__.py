"""Preprocessing: what turns a raw case into network input, and what export uses to undo it.

Modules: ``cropping`` (crop to the nonzero region, un-crop), ``normalization`` (CT and z-score schemes),
``resampling`` (nnU-Net's resampling rules, with ``interpolation`` and ``label_resampling`` underneath) and
``case_preprocessor`` (one case as planned, and foreground locations for oversampling). Nothing is imported here,
so that importing the package stays cheap.
"""
