"""pneumo: assistive pneumonia detection on chest X-rays.

pneumo is a second reader for radiologists and a toolkit for ML engineers. It is not a diagnosis.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "pneumo is an assistive tool for trained clinicians. It does not make a diagnosis; "
    "a radiologist must read every image."
)
