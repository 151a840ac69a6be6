"""Volumes and time series: lazy per-slice reading, per-slice embeddings, prompt propagation, label volumes.

* :mod:`~segprompt.volume.reader`: :func:`open_volume` (TIFF, ``.npy``, Zarr,
  OME-Zarr, read one plane at a time) and the axis conventions;
* :mod:`~segprompt.volume.writer`: label volumes as TIFF or OME-Zarr, atomically;
* :mod:`~segprompt.volume.embeddings`: each slice embedded once, on demand;
* :mod:`~segprompt.volume.projection`: the prompt one slice's mask gives the next;
* :mod:`~segprompt.volume.propagation`: the propagators (prompt projection for
  every backend that takes a mask or box; the memory of SAM 2's and SAM 3's
  video models in :mod:`~segprompt.volume.video`);
* :mod:`~segprompt.volume.session`: several objects, corrections on any slice;
* :mod:`~segprompt.volume.synthetic`: test volumes with known ground truth.
"""
