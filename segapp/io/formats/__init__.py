"""One reader per format family (raster images, DICOM, NIfTI), below the dispatcher in ``segapp.io.scans``.

Each module here imports only :mod:`segapp.io.formats.common`, :mod:`segapp.io.errors` and
:mod:`segapp.io.limits`; nothing here imports the dispatcher.
"""
