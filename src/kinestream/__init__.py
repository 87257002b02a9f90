"""kinestream: 3D body keypoints to OpenSim joint angles, live and offline.

The data path, one module a stage:

    ingest   keypoints and .trc in, named marker arrays out
    clean    gap filling and low-pass filtering
    augment  OpenCap LSTM marker augmenter (onnxruntime)
    scale    generic model to the subject (OpenSim ScaleTool)
    solve    inverse kinematics (OpenSim InverseKinematicsSolver)
    record   .trc and .mot writers
"""

__version__ = "0.1.0"
