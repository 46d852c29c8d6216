"""segformer3d_auto: self-configuring 3D segmentation with SegFormer3D, in the manner of nnU-Net v2."""

__version__ = "0.1.0"
