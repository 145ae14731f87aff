"""Face profiling: turning the heads of annotated photographs in 3D to synthesise large-pose faces (300W-LP style).

Two meshes. The dense face (``python -m trainer profile --mesh dense``, the default): ``face3d`` loads
the Basel Face Model and 3DDFA_V2's regressor, ``dense_fit`` fits a face and deforms the dense mean face
to it, ``zbuffer`` rasterises it, ``dense_render`` textures it from the photograph and renders it turned
over a background that follows, and ``pose_sheet`` draws a contact sheet at fixed poses. The 68-point
mean face (``--mesh bfm68``): ``fit`` fits a per-face 3D shape and pose to a face's 68 landmarks,
``mesh`` builds the head and background meshes textured from the photograph, ``render`` draws them with
per-triangle warps in depth order, and ``turn`` puts the three together to render one face at a new
pose with its labels. ``python -m trainer profile`` runs either over whole datasets.
"""
