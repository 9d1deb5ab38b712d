"""The chest-X-ray gate: decides before classification whether an input is a chest radiograph the model
can judge at all. Cheap checks (colour, blank, size, shape) give clear reasons; a Mahalanobis distance on
the classifier's own pooled features catches the rest (photographs, documents, screenshots, other body
parts), calibrated on the training X-rays. Inputs it refuses are reported as UNKNOWN, never scored;
:mod:`pneumo.gate.verdict` holds the one rule that turns the scores into a reading, a warned reading or
UNKNOWN."""
