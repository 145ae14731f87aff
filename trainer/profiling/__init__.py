"""Face profiling: turning the heads of annotated photographs in 3D to synthesise large-pose faces (300W-LP style).

``fit`` fits a per-face 3D shape and pose to a face's 68 landmarks, ``mesh`` builds the head and
background meshes textured from the photograph, ``render`` draws them with per-triangle warps in
depth order, and ``turn`` puts the three together to render one face at a new pose with its labels.
``python -m trainer.profile`` runs it over whole datasets.
"""
