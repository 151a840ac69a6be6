"""napari plugin of segprompt (npe2 manifest: ``napari.yaml``).

Contributes the "segprompt" dock widget (:class:`napari_plugin._widget.SegpromptWidget`)
and scikit-image sample images. The widget is a thin front end; the annotation
logic is headless, in :mod:`segprompt.annotation`.
"""
