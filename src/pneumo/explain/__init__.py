"""Grad-CAM heatmaps for every registry architecture and their overlay on the X-ray."""
