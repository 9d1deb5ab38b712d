"""DICOM: a Storage SCP node that reads what a PACS sends and answers with Structured Reports, and a
DICOMweb reader for ``pneumo predict``. Needs the ``dicom`` extra (pynetdicom, highdicom, dicomweb-client).

Layers: :mod:`settings` and :mod:`checks` use pydicom only; :mod:`report` builds the SR and the Grad-CAM
Secondary Capture (highdicom); :mod:`forward` sends them (C-STORE SCU); :mod:`node` is the SCP and its worker;
:mod:`dicomweb` pulls studies over QIDO-RS / WADO-RS. The web service wires the node in; nothing here imports
the service.
"""
